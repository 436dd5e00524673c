"""`entropy-coder generate` and `entropy-coder sample`: outputs, progress, one-line errors."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from entropy_coder import cli
from entropy_coder import codes_format
from entropy_coder.data_gen import synthetic

_ENTRY_POINT = os.path.join(os.path.dirname(sys.executable), 'entropy-coder')


def _run(capsys, *argv):
  status = cli.main(list(argv))
  out, err = capsys.readouterr()
  return status, out, err


def _assert_one_line_error(status, err, command, *fragments):
  assert status == 2
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith(f'entropy-coder {command}: error: ')
  for fragment in fragments:
    assert fragment in lines[0]


@pytest.mark.parametrize('command,flags', [
    ('generate', ['--output-dir', '--count', '--seed', '--shape', '--num-workers', '--shards',
                  '--overwrite']),
    ('sample', ['--output', '--shape', '--layer-depth', '--seed']),
])
def test_help(capsys, command, flags):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([command, '--help'])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  for flag in flags:
    assert flag in out


def test_generate_writes_shards_and_manifest(tmp_path, capsys):
  out_dir = str(tmp_path / 'dataset')
  status, out, err = _run(capsys, 'generate', '--output-dir', out_dir, '--count', '40',
                          '--seed', '3', '--shape', '4,5,6', '--shards', '2')
  assert status == 0
  assert 'wrote 40 samples' in out
  assert 'entropy-coder generate: wrote data-00000-of-00002.tfrecord.gz (20 samples)' in err
  with open(os.path.join(out_dir, 'manifest.json')) as f:
    manifest = json.load(f)
  assert manifest['count'] == 40 and manifest['seed'] == 3 and manifest['shape'] == [4, 5, 6]
  assert manifest['example_format_version'] == codes_format.EXAMPLE_FORMAT_VERSION
  assert manifest['generator'] == synthetic.GENERATOR_ID
  files = sorted(glob.glob(os.path.join(out_dir, 'data-?????-of-?????.tfrecord.gz')))
  assert [os.path.basename(f) for f in files] == [s['file'] for s in manifest['shards']]
  assert [s['count'] for s in manifest['shards']] == [20, 20]
  assert sorted(os.listdir(out_dir)) == sorted([os.path.basename(f) for f in files]
                                               + ['manifest.json'])
  # Shards in name order hold samples 0..N-1 in order.
  codes = np.stack([code for _, code in codes_format.iter_tfrecord_codes(files)])
  np.testing.assert_array_equal(codes, synthetic.generate_codes(3, 0, 40, shape=(4, 5, 6)))


def test_generate_refuses_a_non_empty_directory_unless_overwrite(tmp_path, capsys):
  out_dir = str(tmp_path / 'dataset')
  args = ['generate', '--output-dir', out_dir, '--count', '12', '--shape', '3,4,2']
  assert _run(capsys, *args)[0] == 0
  with open(os.path.join(out_dir, 'manifest.json')) as f:
    before = f.read()
  status, _, err = _run(capsys, *args, '--seed', '8')
  _assert_one_line_error(status, err, 'generate', out_dir, '--overwrite')
  with open(os.path.join(out_dir, 'manifest.json')) as f:
    assert f.read() == before
  (tmp_path / 'dataset' / 'notes.txt').write_text('mine')
  status, _, _ = _run(capsys, *args, '--seed', '8', '--shards', '3', '--overwrite')
  assert status == 0
  with open(os.path.join(out_dir, 'manifest.json')) as f:
    manifest = json.load(f)
  assert manifest['seed'] == 8
  assert sorted(os.listdir(out_dir)) == ['data-00000-of-00003.tfrecord.gz',
                                         'data-00001-of-00003.tfrecord.gz',
                                         'data-00002-of-00003.tfrecord.gz', 'manifest.json',
                                         'notes.txt']


@pytest.mark.parametrize('flags,fragment', [
    (['--shape', '1,2'], '--shape'),
    (['--shape', 'a,b,c'], '--shape'),
    (['--count', '0'], '--count'),
    (['--count', 'many'], '--count'),
    (['--count', '10', '--shards', '11'], '--shards'),
    (['--num-workers', '0'], '--num-workers'),
    (['--seed', '-1'], '--seed'),
    (['--seed', str(2**64)], '--seed'),
    (['--bundle-size', '0'], '--bundle-size'),
])
def test_generate_bad_input_is_one_line_exit_2(tmp_path, capsys, flags, fragment):
  out_dir = str(tmp_path / 'dataset')
  status, _, err = _run(capsys, 'generate', '--output-dir', out_dir, *flags)
  _assert_one_line_error(status, err, 'generate', fragment)
  assert not os.path.exists(out_dir)


def test_generate_into_a_file_is_one_line_exit_2(tmp_path, capsys):
  path = tmp_path / 'a_file'
  path.write_text('x')
  status, _, err = _run(capsys, 'generate', '--output-dir', str(path), '--count', '3')
  _assert_one_line_error(status, err, 'generate', str(path), 'not a directory')


def test_sample_defaults_are_the_originals(tmp_path, capsys):
  path = str(tmp_path / 'sample.npz')
  status, out, _ = _run(capsys, 'sample', '--output', path)
  assert status == 0 and path in out
  with np.load(path, allow_pickle=False) as data:
    assert data['shape'].tolist() == [4, 1, 31, 36, 2]
    assert data['codes'].shape == (8928 // 8,)
  code, layer_depth = codes_format.read_npz(path)
  assert layer_depth == 2
  np.testing.assert_array_equal(code, synthetic.generate_codes(0, [0], shape=(31, 36, 8))[0])


def test_sample_options_and_exact_file_name(tmp_path, capsys):
  path = str(tmp_path / 'code.bin')  # no .npz suffix: written under exactly this name
  status, _, _ = _run(capsys, 'sample', '--output', path, '--shape', '6,7,4',
                      '--layer-depth', '4', '--seed', '5', '--index', '3')
  assert status == 0 and os.listdir(tmp_path) == ['code.bin']
  code, layer_depth = codes_format.read_npz(path)
  assert layer_depth == 4
  np.testing.assert_array_equal(code, synthetic.generate_codes(5, [3], shape=(6, 7, 4))[0])


@pytest.mark.parametrize('flags,fragment', [
    (['--layer-depth', '3'], '--layer-depth'),
    (['--layer-depth', '0'], '--layer-depth'),
    (['--shape', '4,4'], '--shape'),
    (['--seed', 'x'], '--seed'),
])
def test_sample_bad_input_is_one_line_exit_2(tmp_path, capsys, flags, fragment):
  status, _, err = _run(capsys, 'sample', '--output', str(tmp_path / 's.npz'), *flags)
  _assert_one_line_error(status, err, 'sample', fragment)


def test_sample_into_a_missing_directory_names_the_file(tmp_path):
  """Through the installed entry point: a real process, its exit status and its stderr."""
  path = str(tmp_path / 'missing' / 's.npz')
  result = subprocess.run([_ENTRY_POINT, 'sample', '--output', path], capture_output=True,
                          text=True, check=False)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('entropy-coder sample: error: ') and path in lines[0]


def test_a_failed_overwrite_keeps_the_old_dataset(tmp_path, capsys, monkeypatch):
  from entropy_coder.data_gen import tfrecord_files  # pylint: disable=g-import-not-at-top
  out_dir = str(tmp_path / 'dataset')
  args = ['generate', '--output-dir', out_dir, '--count', '10', '--shape', '3,4,2']
  assert _run(capsys, *args)[0] == 0
  before = {name: (tmp_path / 'dataset' / name).read_bytes() for name in os.listdir(out_dir)}

  def disk_full(path, piece_paths):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(tfrecord_files, 'gzip_concatenation', disk_full)
  with pytest.raises(Exception, match='No space left'):
    cli.main(args + ['--seed', '1', '--overwrite'])
  after = {name: (tmp_path / 'dataset' / name).read_bytes() for name in os.listdir(out_dir)}
  assert after == before  # old shards and manifest untouched, no temporary directory left
