"""`entropy-coder import-codes` and the .npz directory checks it shares with NpzCodeImport.

Real Beam runs (DirectRunner) on tiny directories; outputs are read back with TensorFlow's
TFRecord reader, exactly as the Trainer reads them.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from entropy_coder import cli
from entropy_coder import codes_format
from entropy_coder.components import npz_code_import
from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.errors import UserError


def _random_code(rng, shape):
  return rng.integers(0, 2, size=shape, dtype=np.uint8)


def write_codes(directory, shapes, layer_depth=2, seed=0):
  """Writes one random .npz code per shape; -> {file name: code}."""
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)
  codes = {}
  for index, shape in enumerate(shapes):
    name = f'code_{index:03d}.npz'
    codes[name] = _random_code(rng, shape)
    codes_format.write_npz(os.path.join(directory, name), codes[name], layer_depth)
  return codes


def read_split(path_pattern):
  """{sample_index: code} of the GZIP TFRecords matching the pattern, read as the Trainer does."""
  files = tf.io.gfile.glob(path_pattern)
  assert files, f'no files match {path_pattern}'
  result = {}
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator():
    (index,) = tf.train.Example.FromString(record).features.feature[
        codes_format.FEATURE_SAMPLE_INDEX].int64_list.value
    assert index not in result
    result[index] = codes_format.decode_example(record)
  return result


def assert_same_codes(got, expected):
  """Both {index: code}: same indices, equal shapes and bits."""
  assert sorted(got) == sorted(expected)
  for index, code in expected.items():
    assert got[index].shape == code.shape and np.array_equal(got[index], code), index


def expected_splits(codes, splits=splits_lib.DEFAULT_SPLITS):
  """{split: {file index: code}} by sorted file name, as the import promises."""
  result = {name: {} for name, _ in splits}
  for index, name in enumerate(sorted(codes)):
    result[splits_lib.split_of(index, splits)][index] = codes[name]
  return result


def _bad_kinds(directory):
  """Writes one bad .npz of each kind into `directory`; -> {kind: file name}."""
  good = np.zeros((3, 4, 2), dtype=np.uint8)
  packed = np.packbits(good.reshape(-1))
  shape = np.array([1, 1, 3, 4, 2])
  files = {
      'bad key': ('a.npz', dict(codes=packed, shapes=shape)),
      'shape product': ('b.npz', dict(codes=packed[:-1], shape=shape)),
      'non-binary': ('c.npz', dict(codes=np.full(24, 2, dtype=np.int8), shape=shape)),
      'pickle': ('d.npz', dict(codes=np.array([packed, None], dtype=object), shape=shape)),
  }
  for name, arrays in files.values():
    np.savez(os.path.join(directory, name), **arrays)
  with open(os.path.join(directory, 'e.npz'), 'wb') as f:
    f.write(b'not a zip file at all')
  return {kind: name for kind, (name, _) in files.items()} | {'not an npz': 'e.npz'}


def test_check_npz_files_reads_layout_and_keeps_name_order(tmp_path):
  codes = write_codes(tmp_path, [(3, 4, 4), (5, 2, 4), (3, 4, 4)], layer_depth=2)
  # A file that is not *.npz is not an input.
  (tmp_path / 'notes.txt').write_text('not a code')
  paths = npz_code_import.list_npz_files(str(tmp_path))
  assert [os.path.basename(p) for p in paths] == sorted(codes)
  code_set = npz_code_import.check_npz_files(paths)
  assert code_set.layer_depth == 2
  assert code_set.depth == 4
  assert code_set.shapes == ((3, 4, 4), (5, 2, 4))


@pytest.mark.parametrize('kind', ['bad key', 'shape product', 'non-binary', 'pickle',
                                  'not an npz'])
def test_each_bad_file_kind_is_one_line_error_naming_the_file(tmp_path, kind, capsys):
  input_dir = tmp_path / 'codes'
  write_codes(input_dir, [(3, 4, 2)] * 3)
  bad_dir = tmp_path / 'bad'
  bad_dir.mkdir()
  bad_name = _bad_kinds(bad_dir)[kind]
  os.replace(bad_dir / bad_name, input_dir / 'code_001x.npz')  # between good files
  output_dir = tmp_path / 'out'

  status = cli.main(['import-codes', '--input-dir', str(input_dir),
                     '--output-dir', str(output_dir), '--splits', 'train:1,eval:1'])

  err = capsys.readouterr().err
  message = err.strip().splitlines()[-1]
  assert status == 2
  assert message.startswith('entropy-coder import-codes: error: ')
  assert str(input_dir / 'code_001x.npz') in message
  assert 'Traceback' not in err
  assert not output_dir.exists()


def test_pickle_is_refused_not_loaded(tmp_path):
  bad_name = _bad_kinds(tmp_path)['pickle']
  with pytest.raises(UserError, match='pickle'):
    npz_code_import.check_npz_files([str(tmp_path / bad_name)])


@pytest.mark.parametrize('second_layout', [(8, 4), (4, 2)], ids=['layer_depth', 'depth'])
def test_mixed_layer_depth_or_depth_is_an_error(tmp_path, second_layout):
  depth, layer_depth = second_layout
  write_codes(tmp_path, [(3, 4, 8)], layer_depth=2)
  rng = np.random.default_rng(1)
  codes_format.write_npz(str(tmp_path / 'code_zzz.npz'), _random_code(rng, (3, 4, depth)),
                         layer_depth)
  with pytest.raises(UserError) as error:
    npz_code_import.check_npz_files(npz_code_import.list_npz_files(str(tmp_path)))
  message = str(error.value)
  assert message.startswith(str(tmp_path / 'code_zzz.npz'))
  assert 'code_000.npz' in message and '\n' not in message


def test_empty_or_missing_input_dir_is_an_error(tmp_path, capsys):
  (tmp_path / 'empty').mkdir()
  for input_dir in (tmp_path / 'empty', tmp_path / 'missing'):
    status = cli.main(['import-codes', '--input-dir', str(input_dir),
                       '--output-dir', str(tmp_path / 'out')])
    message = capsys.readouterr().err.strip()
    assert status == 2
    assert str(input_dir) in message and len(message.splitlines()) == 1
  assert not (tmp_path / 'out').exists()


def test_import_writes_splits_by_file_index_and_manifest(tmp_path, capsys):
  shapes = [(3, 4, 4)] * 7 + [(5, 6, 4)] * 6  # 13 files: eval gets index 9 only
  codes = write_codes(tmp_path / 'codes', shapes, layer_depth=1)
  output_dir = tmp_path / 'out'

  status = cli.main(['import-codes', '--input-dir', str(tmp_path / 'codes'),
                     '--output-dir', str(output_dir)])

  assert status == 0
  assert 'checked 13/13 files' in capsys.readouterr().err
  expected = expected_splits(codes)
  assert [len(expected['train']), len(expected['eval'])] == [12, 1]
  for name in ('train', 'eval'):
    assert_same_codes(read_split(str(output_dir / f'Split-{name}' / '*.gz')), expected[name])
  manifest = json.loads((output_dir / 'manifest.json').read_text())
  assert manifest['layer_depth'] == 1 and manifest['code_depth'] == 4
  assert manifest['source']['num_files'] == 13
  assert {name: s['num_examples'] for name, s in manifest['splits'].items()} == {
      'train': 12, 'eval': 1}
  assert manifest['code_shapes'] == [[3, 4, 4], [5, 6, 4]]
  assert sorted(os.listdir(output_dir)) == ['Split-eval', 'Split-train', 'manifest.json']


def test_custom_splits_and_overwrite(tmp_path, capsys):
  codes = write_codes(tmp_path / 'codes', [(2, 3, 2)] * 7)
  output_dir = tmp_path / 'out'
  output_dir.mkdir()
  (output_dir / 'Split-old').mkdir()
  (output_dir / 'keep.txt').write_text('not ours')
  args = ['import-codes', '--input-dir', str(tmp_path / 'codes'), '--output-dir',
          str(output_dir), '--splits', 'train:2,eval:1,test:1']

  assert cli.main(args) == 2
  assert 'not empty' in capsys.readouterr().err
  assert sorted(os.listdir(output_dir)) == ['Split-old', 'keep.txt']

  assert cli.main(args + ['--overwrite']) == 0
  splits = splits_lib.parse_splits('train:2,eval:1,test:1')
  expected = expected_splits(codes, splits)
  assert [len(expected[n]) for n in ('train', 'eval', 'test')] == [4, 2, 1]
  for name in ('train', 'eval', 'test'):
    assert_same_codes(read_split(str(output_dir / f'Split-{name}' / '*.gz')), expected[name])
  # Our earlier outputs are replaced, foreign files are left alone.
  assert sorted(os.listdir(output_dir)) == [
      'Split-eval', 'Split-test', 'Split-train', 'keep.txt', 'manifest.json']


@pytest.mark.parametrize('splits', ['train:9', 'train:1,eval:0', 'train:1,train:2,eval:1'])
def test_bad_splits_are_refused(tmp_path, splits, capsys):
  write_codes(tmp_path / 'codes', [(2, 3, 2)] * 2)
  status = cli.main(['import-codes', '--input-dir', str(tmp_path / 'codes'),
                     '--output-dir', str(tmp_path / 'out'), '--splits', splits])
  message = capsys.readouterr().err.strip()
  assert status == 2
  assert message.startswith('entropy-coder import-codes: error: ')
  assert len(message.splitlines()) == 1
  assert not (tmp_path / 'out').exists()


def test_a_split_left_empty_is_an_error(tmp_path, capsys):
  write_codes(tmp_path / 'codes', [(2, 3, 2)] * 9)  # indices 0..8: all train with 9:1
  status = cli.main(['import-codes', '--input-dir', str(tmp_path / 'codes'),
                     '--output-dir', str(tmp_path / 'out')])
  message = capsys.readouterr().err.strip()
  assert status == 2
  assert message.startswith(f'entropy-coder import-codes: error: {tmp_path / "codes"}: ')
  assert 'split eval empty' in message
  assert not (tmp_path / 'out').exists()
