"""Real bitstreams: exact round trips, size against theory, chunking, threads, processes, golden file."""
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import causal_reference_model, reference_model
from entropy_coder import codec, codes_format
from entropy_coder.codec import api, bitstream, full_forward, engine_weights
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError


GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'codec_golden')
# Set REGENERATE_CODEC_GOLDEN=1 to rewrite the golden file after a deliberate format change.
REGENERATE = os.environ.get('REGENERATE_CODEC_GOLDEN') == '1'


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  return reference_model(str(tmp_path_factory.mktemp('reference_model')))


def _assert_same(restored, codes):
  assert len(restored) == len(codes)
  for got, want in zip(restored, codes):
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want)


def _size_bound_holds(stats):
  return stats.payload_bytes * 8 <= stats.theoretical_bits * 1.005 + 64 * stats.samples


def test_two_hundred_synthetic_samples_round_trip_near_theory(model):
  codes = list(synthetic.generate_codes(seed=11, indices_or_start=0, count=200))
  data, stats = codec.compress_with_stats(codes, model)
  restored, decode_stats, header = codec.decompress_with_stats(data, model)
  _assert_same(restored, codes)
  assert header.sample_count == 200 and len(header.chunks) == 2  # 2 chunks of 100
  assert _size_bound_holds(stats)
  assert stats.payload_bytes * 8 <= stats.theoretical_bits * 1.005
  assert decode_stats.theoretical_bits == stats.theoretical_bits
  # The engine's theory is the model's code length (float64 full forward), to float32 precision.
  net = engine_weights.build_network(model)
  expected = full_forward.code_length_bits(full_forward.full_forward(net, np.stack(codes)), codes).sum()
  assert abs(stats.theoretical_bits - expected) <= 1e-6 * expected


EDGE_CASES = {
    '1x1 one layer': [np.array([[[1, 0]]], np.uint8)],
    'one row': [np.random.default_rng(1).integers(0, 2, (1, 17, 4), dtype=np.uint8)],
    'one column': [np.random.default_rng(2).integers(0, 2, (9, 1, 6), dtype=np.uint8)],
    'odd sizes': [np.random.default_rng(3).integers(0, 2, (7, 5, 6), dtype=np.uint8) for _ in range(3)],
    'all zero': [np.zeros((6, 8, 8), np.uint8)] * 2,
    'all one': [np.ones((6, 8, 8), np.uint8)] * 2,
    'fewer layers than layer_count': [np.random.default_rng(4).integers(0, 2, (10, 12, 2), dtype=np.uint8)],
    'all layers': [np.random.default_rng(5).integers(0, 2, (4, 6, 16), dtype=np.uint8)],
    'mixed shapes, interleaved': [np.random.default_rng(6 + i).integers(0, 2, shape, dtype=np.uint8)
                                  for i, shape in enumerate([(3, 4, 2), (5, 5, 4), (3, 4, 2),
                                                             (1, 1, 2), (5, 5, 4), (3, 4, 2)])],
    'bool codes': [np.random.default_rng(7).random((4, 4, 4)) < 0.5],
    'no codes': [],
}


@pytest.mark.parametrize('name', sorted(EDGE_CASES))
def test_edge_shapes_round_trip(model, name):
  codes = EDGE_CASES[name]
  data, stats = codec.compress_with_stats(codes, model)
  _assert_same(codec.decompress(data, model), [np.asarray(c, np.uint8) for c in codes])
  assert _size_bound_holds(stats)


def test_bytes_do_not_depend_on_threads_and_chunking_does_not_matter(model, monkeypatch):
  codes = list(synthetic.generate_codes(seed=3, indices_or_start=0, count=9, shape=(9, 10, 4)))
  one_thread = codec.compress(codes, model, threads=1)
  assert codec.compress(codes, model, threads=2) == one_thread
  assert len(codec.read_header(one_thread).chunks) == 1
  # Other chunk sizes give other files (and a bit more overhead), but the same codes back.
  monkeypatch.setattr(api, 'MAX_CHUNK_SAMPLES', 2)
  small_chunks = codec.compress(codes, model, threads=2)
  assert len(codec.read_header(small_chunks).chunks) == 5
  _assert_same(codec.decompress(small_chunks, model, threads=1), codes)
  _assert_same(codec.decompress(one_thread, model, threads=2), codes)


def test_channel_causal_model_round_trips(model, tmp_path):
  causal = causal_reference_model(model, str(tmp_path), seed=0)
  codes = list(synthetic.generate_codes(seed=5, indices_or_start=0, count=5, shape=(11, 13, 6)))
  codes.append(np.ones((1, 1, 2), np.uint8))
  data, stats = codec.compress_with_stats(codes, causal)
  assert codec.read_header(data).channel_causal
  restored, decode_stats, _ = codec.decompress_with_stats(data, causal)
  _assert_same(restored, codes)
  # The decoder's channel-by-channel path saw exactly the encoder's probabilities.
  assert decode_stats.theoretical_bits == stats.theoretical_bits
  assert _size_bound_holds(stats)


def test_progress_reports_every_bit(model):
  codes = [np.zeros((4, 5, 4), np.uint8)] * 3
  calls = []
  data = codec.compress(codes, model, progress=lambda done, total: calls.append((done, total)))
  assert calls and calls[-1] == (240, 240) and all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
  calls.clear()
  codec.decompress(data, model, progress=lambda done, total: calls.append((done, total)))
  assert calls[-1] == (240, 240)


def _mixed_inputs():
  """One-code files of three shapes, interleaved, with two many-code files among them."""
  shapes = [(9, 13, 4), (16, 16, 8), (5, 7, 2)]
  inputs = []
  for i in range(40):
    code = synthetic.generate_codes(seed=14, indices_or_start=[i], shape=shapes[i % 3])[0]
    inputs.append(([code], bitstream.SOURCE_NPZ, 2 if i % 4 else 1))
  inputs.insert(7, (list(synthetic.generate_codes(seed=15, indices_or_start=0, count=3,
                                                  shape=(9, 13, 4))), bitstream.SOURCE_TFRECORD, 0))
  inputs.insert(20, ([np.ones((2, 2, 2), np.uint8), np.zeros((3, 1, 4), np.uint8)],
                     bitstream.SOURCE_API, 0))
  return inputs


@pytest.mark.parametrize('format_version', [1, 2])
def test_many_files_at_once_are_the_files_of_each_alone(model, monkeypatch, format_version):
  """compress_each / decompress_each (what the CLI uses for one file per image) code one-code
  files of equal shape in shared engine batches, a stream each: every file is byte for byte what
  compress_with_stats writes for it alone, with the same stats, and decodes the same."""
  monkeypatch.setattr(api, 'EACH_WINDOW', 16)  # several windows, a many-code file between
  inputs = _mixed_inputs()
  alone = [codec.compress_with_stats(codes, model, source_format=fmt, source_layer_depth=ld,
                                     format_version=format_version)
           for codes, fmt, ld in inputs]
  together = list(codec.compress_each(inputs, model, threads=2, format_version=format_version))
  assert [data for data, _ in together] == [data for data, _ in alone]
  assert [stats for _, stats in together] == [stats for _, stats in alone]
  files = [(data, f'file{i}.nec') for i, (data, _) in enumerate(alone)]
  decoded = list(codec.decompress_each(files, model, threads=2))
  assert len(decoded) == len(inputs)
  for (codes, _, _), (restored, stats, header), (data, source) in zip(inputs, decoded, files):
    _assert_same(restored, [np.asarray(c, np.uint8) for c in codes])
    single = codec.decompress_with_stats(data, model, source=source)
    assert stats == single[1] and header == single[2]


def test_many_files_at_once_channel_causal(model, tmp_path):
  causal = causal_reference_model(model, str(tmp_path), seed=3)
  inputs = _mixed_inputs()[:12]
  together = [data for data, _ in codec.compress_each(inputs, causal)]
  assert together == [codec.compress(codes, causal, source_format=fmt, source_layer_depth=ld)
                      for codes, fmt, ld in inputs]
  for (codes, _, _), (restored, _, _) in zip(
      inputs, codec.decompress_each([(data, 'x') for data in together], causal)):
    _assert_same(restored, codes)


def test_many_files_at_once_a_damaged_file_fails_in_its_turn(model):
  """A damaged stream in a shared batch: the files before it come out, then its own error, as
  if each file had been decoded alone (the batch is decoded again file by file to find it)."""
  inputs = [item for item in _mixed_inputs() if len(item[0]) == 1][:9]
  files = [codec.compress(codes, model, source_format=fmt, source_layer_depth=ld, format_version=2)
           for codes, fmt, ld in inputs]
  for damage in ('stream', 'crc', 'header'):
    damaged = bytearray(files[4])
    position = {'stream': len(damaged) - 3, 'crc': codec.read_header(files[4]).header_size - 3,
                'header': 8}[damage]
    damaged[position] ^= 0x21
    items = [(data, f'file{i}.nec') for i, data in enumerate(files)]
    items[4] = (bytes(damaged), 'file4.nec')
    with pytest.raises(UserError) as alone:
      codec.decompress(items[4][0], model, source='file4.nec')
    results = codec.decompress_each(items, model)
    for i in range(4):
      restored, _, _ = next(results)
      _assert_same(restored, inputs[i][0])
    with pytest.raises(UserError) as caught:
      next(results)
    assert str(caught.value) == str(alone.value) and str(caught.value).startswith('file4.nec')


def _cli(*args, threads='1'):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'entropy_coder.cli', *args, '--threads', threads],
                        capture_output=True, text=True, env=env, timeout=600, check=False)


def test_cli_round_trip_across_processes_npz(model, tmp_path):
  code = synthetic.generate_codes(seed=9, indices_or_start=[4], shape=(31, 36, 8))[0]
  source = str(tmp_path / 'code.npz')
  codes_format.write_npz(source, code, layer_depth=2)
  packed = str(tmp_path / 'code.nec')
  restored = str(tmp_path / 'restored.npz')
  done = _cli('compress', '--model', model.path, source, '-o', packed)
  assert done.returncode == 0, done.stderr
  assert 'bits/bit' in done.stdout and 'gap' in done.stdout
  done = _cli('decompress', '--model', model.path, packed, '-o', restored, threads='2')
  assert done.returncode == 0, done.stderr
  back, layer_depth = codes_format.read_npz(restored)
  assert layer_depth == 2 and np.array_equal(back, code)


def test_cli_round_trip_across_processes_tfrecord(model, tmp_path):
  from entropy_coder.data_gen import example_wire, tfrecord_files  # pylint: disable=g-import-not-at-top
  codes = list(synthetic.generate_codes(seed=10, indices_or_start=0, count=6, shape=(12, 14, 8)))
  for i, chunk in enumerate((codes[:4], codes[4:])):
    tfrecord_files.write_gzip_tfrecords(str(tmp_path / f'part-{i}.gz'),
                                        [example_wire.encode_example(c) for c in chunk])
  packed = str(tmp_path / 'codes.nec')
  restored = str(tmp_path / 'restored.tfrecord.gz')
  done = _cli('compress', '--model', model.path, str(tmp_path / 'part-*.gz'), '-o', packed)
  assert done.returncode == 0, done.stderr
  assert codec.read_header(open(packed, 'rb').read()).source_format == bitstream.SOURCE_TFRECORD_GZIP
  done = _cli('decompress', '--model', model.path, packed, '-o', restored, threads='2')
  assert done.returncode == 0, done.stderr
  assert codes_format.is_gzip(restored)
  _assert_same([c for _, c in codes_format.iter_tfrecord_codes([restored])], codes)


def test_cli_many_files_one_process_one_output_each(model, tmp_path):
  """Thousands of images, one file each: one compress process takes files, a directory and a
  glob, writes DIR/<name>.nec per input, each the bytes `compress` gives that input alone; one
  decompress process restores every file under its own name, in its own format."""
  from entropy_coder.data_gen import example_wire, tfrecord_files  # pylint: disable=g-import-not-at-top
  shapes = [(22, 48, 16), (16, 16, 8), (9, 13, 4), (16, 16, 8), (5, 7, 2)]
  codes = [synthetic.generate_codes(seed=12, indices_or_start=[i], shape=shape)[0]
           for i, shape in enumerate(shapes)]
  images, more = tmp_path / 'images', tmp_path / 'more'
  images.mkdir()
  more.mkdir()
  for i, code in enumerate(codes[:3]):
    codes_format.write_npz(str(images / f'img{i}.npz'), code, layer_depth=2)
  codes_format.write_npz(str(more / 'x3.npz'), codes[3], layer_depth=1)  # another layer_depth
  tfrecord_files.write_gzip_tfrecords(str(more / 'x4.tfrecord.gz'),
                                      [example_wire.encode_example(c) for c in codes[3:]])
  (images / 'img0.npz.nec').write_bytes(b'an earlier output: left out of the directory input')
  out, back = tmp_path / 'out', tmp_path / 'back'
  out.mkdir()
  back.mkdir()
  done = _cli('compress', '--model', model.path, str(images), str(more / 'x*'), '-o', str(out))
  assert done.returncode == 0, done.stderr
  assert 'compressed 5 files (6 codes)' in done.stdout and 'wrote 5 files into' in done.stdout
  names = ['img0.npz.nec', 'img1.npz.nec', 'img2.npz.nec', 'x3.npz.nec', 'x4.tfrecord.gz.nec']
  assert sorted(os.listdir(out)) == names
  inputs = [([codes[i]], bitstream.SOURCE_NPZ, 2) for i in range(3)]
  inputs += [([codes[3]], bitstream.SOURCE_NPZ, 1), (codes[3:], bitstream.SOURCE_TFRECORD_GZIP, 0)]
  for name, (expected, fmt, layer_depth) in zip(names, inputs):
    alone = codec.compress(expected, model, source_format=fmt, source_layer_depth=layer_depth)
    assert (out / name).read_bytes() == alone, name
  done = _cli('decompress', '--model', model.path, str(out / '*.nec'), '-o', str(back) + '/')
  assert done.returncode == 0, done.stderr
  assert 'decompressed 5 files (6 codes)' in done.stdout
  assert sorted(os.listdir(back)) == [name[:-4] for name in names]
  for i in range(3):
    assert codes_format.read_npz(str(back / f'img{i}.npz'))[1] == 2
    assert np.array_equal(codes_format.read_npz(str(back / f'img{i}.npz'))[0], codes[i])
  restored, layer_depth = codes_format.read_npz(str(back / 'x3.npz'))
  assert layer_depth == 1 and np.array_equal(restored, codes[3])
  _assert_same([c for _, c in codes_format.iter_tfrecord_codes([str(back / 'x4.tfrecord.gz')])],
               codes[3:])
  # -o DIR/ takes a single input too; a second run refuses to overwrite.
  single = tmp_path / 'single'
  single.mkdir()
  done = _cli('compress', '--model', model.path, str(images / 'img1.npz'), '-o', str(single) + '/')
  assert done.returncode == 0, done.stderr
  assert (single / 'img1.npz.nec').read_bytes() == (out / 'img1.npz.nec').read_bytes()
  done = _cli('compress', '--model', model.path, str(images), '-o', str(out))
  assert done.returncode == 2 and 'img0.npz.nec: exists; pass --overwrite' in done.stderr


def test_progress_of_a_many_file_run_is_per_file(capsys):
  from entropy_coder.commands import compress as compress_command  # pylint: disable=g-import-not-at-top
  progress = compress_command._ProgressLine('compress')  # pylint: disable=protected-access
  progress.files(1, 1000, 'images/a.npz')
  assert capsys.readouterr().err == ''  # nothing in the first second
  progress._start -= 2.0  # pylint: disable=protected-access
  progress.files(37, 1000, 'images/b.npz')
  progress.close()
  err = capsys.readouterr().err
  assert 'compress: 37 / 1,000 files (  3.7%' in err and 'files/s) b.npz' in err


def test_golden_bitstream_is_stable(model):
  """The committed version-1 file (written before version 2): this build must still decode it,
  and writing version 1 (format_version=1) must still give the same bytes, so its streams pin
  the coder as test_golden_bitstream_v2_is_stable's do."""
  codes = list(synthetic.generate_codes(seed=2024, indices_or_start=0, count=3, shape=(6, 7, 4)))
  codes.append(np.ones((2, 3, 2), np.uint8))
  path = os.path.join(GOLDEN_DIR, 'reference_model_v1.nec')
  data = codec.compress(codes, model, format_version=1)
  if REGENERATE:
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    with open(path, 'wb') as f:
      f.write(data)
  with open(path, 'rb') as f:
    golden = f.read()
  assert codec.read_header(golden).version == 1
  _assert_same(codec.decompress(golden, model), codes)
  assert data == golden, 'bitstream changed: bump bitstream.CODER_ID and regenerate'


def test_golden_bitstream_v2_still_decodes(model):
  """The committed version-2 file (coder 1, written before coder 2 and version 3) of the same
  codes as the version-1 one: this build decodes it; its streams are the version-1 file's, byte
  for byte (version 2 changed the container, not the coder). Version 3's golden file is
  test_codec_fallback's; coder 2's streams test_codec_wavefront's."""
  codes = list(synthetic.generate_codes(seed=2024, indices_or_start=0, count=3, shape=(6, 7, 4)))
  codes.append(np.ones((2, 3, 2), np.uint8))
  with open(os.path.join(GOLDEN_DIR, 'reference_model_v2.nec'), 'rb') as f:
    golden = f.read()
  _assert_same(codec.decompress(golden, model), codes)
  with open(os.path.join(GOLDEN_DIR, 'reference_model_v1.nec'), 'rb') as f:
    v1 = f.read()
  header, header_v1 = codec.read_header(golden), codec.read_header(v1)
  assert (header.version, header_v1.version) == (2, 1)
  assert golden[header.header_size:] == v1[header_v1.header_size:]
  assert header.chunks == header_v1.chunks and header.sample_index == header_v1.sample_index
  # 2 chunks: 11 fixed bytes, the count, 2 x 5 bytes of table, 2 CRC32s, the header check,
  # where version 1 had 72 fixed bytes, 2 x 24 of table, 4 x 4 of CRC32s and a header CRC32.
  assert (header.header_size, header_v1.header_size) == (11 + 1 + 10 + 8 + 1, 72 + 48 + 16 + 4)
  # Version 3 of the same codes: the model codes them all, so the table has no method fields.
  data = codec.compress(codes, model, format_version=3)
  assert codec.read_header(data).header_size == header.header_size
  assert not codec.read_header(data).chunks[0].methods


@pytest.mark.parametrize('shape', [(1, 1, 2), (16, 16, 8), (22, 48, 16), (35, 48, 8), (31, 36, 8),
                                   (130, 140, 4)])
def test_a_one_code_file_costs_at_most_24_bytes_beside_its_stream(model, shape):
  """Magic, version, coder, flags, the model's identity (4 bytes of its fingerprint), the shape
  and the stream's size (varints), the CRC32 of header and bits, a header check: 16 bytes and the
  four varints, e.g. 21 for a 22x48x16 code; at most 24 while height and width are below 16384,
  depth below 128 and the stream below 8 MB."""
  code = synthetic.generate_codes(seed=6, indices_or_start=[0], shape=shape)[0]
  data, stats = codec.compress_with_stats([code], model, format_version=2)
  overhead = stats.file_bytes - stats.payload_bytes
  numbers = (*shape, stats.payload_bytes // 4)
  assert overhead == 16 + sum(len(bitstream.varint(n)) for n in numbers) <= 24, overhead
  if shape == (22, 48, 16):
    assert overhead == 21
  # Version 3 costs the same while the model codes every layer.
  data3, stats3 = codec.compress_with_stats([code], model, format_version=3)
  if not stats3.fallback_code_bits:
    assert len(data3) == len(data) and stats3.payload_bytes == stats.payload_bytes
  _assert_same(codec.decompress(data, model), [code])
  # Version 4 (the default) counts its mixed stream in bytes: the same 16 bytes and 4 varints
  # (at most 24 while the stream is below 2 MB).
  data4, stats4 = codec.compress_with_stats([code], model)
  if not stats4.fallback_code_bits:
    numbers = (*shape, stats4.payload_bytes)
    assert stats4.file_bytes - stats4.payload_bytes == 16 + sum(
        len(bitstream.varint(n)) for n in numbers) <= 24
  _assert_same(codec.decompress(data4, model), [code])


def test_many_code_files_stay_near_theory(model):
  """One CRC32 per chunk, not per code: 512 codes of 35x48x8 are within 0.05% of the model's code
  length (0.5% is the target), and 500 small ones (the demo's eval split) within 0.1%."""
  for count, shape, limit in ((512, (35, 48, 8), 0.0005), (500, (16, 16, 8), 0.001)):
    codes = list(synthetic.generate_codes(seed=2017, indices_or_start=0, count=count, shape=shape))
    data, stats = codec.compress_with_stats(codes, model, format_version=2)
    assert 8 * stats.file_bytes <= stats.theoretical_bits * (1 + limit), stats
    assert stats.file_bytes - stats.payload_bytes <= 40
    if count == 512:
      _assert_same(codec.decompress(data, model), codes)


def test_real_size_beats_classical_coders_on_synthetic_codes(model):
  import lzma  # pylint: disable=g-import-not-at-top
  codes = list(synthetic.generate_codes(seed=1, indices_or_start=0, count=20))
  packed = b''.join(np.packbits(c.reshape(-1)).tobytes() for c in codes)
  data = codec.compress(codes, model)
  assert len(data) < 0.85 * len(lzma.compress(packed, preset=9))
  # Theory check of the reference model on this source: ~0.79 bits/bit.
  assert 0.75 < 8 * len(data) / (len(packed) * 8) < 0.82


def test_naive_decoder_baseline_round_trips(model):
  """The benchmark's baseline really decodes (the layer re-evaluated per pixel step), with the
  model's probabilities, for the original and a channel-causal model."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from entropy_coder.codec import naive  # pylint: disable=g-import-not-at-top
  net = engine_weights.build_network(model)
  codes = synthetic.generate_codes(seed=8, indices_or_start=0, count=2, shape=(3, 4, 4))
  data = naive.naive_encode(net, codes)
  assert np.array_equal(naive.naive_decode(net, data, codes.shape), codes)
  partial = naive.naive_decode(net, data, codes.shape, max_steps=5)
  assert np.array_equal(partial[:, 0, :4, :2], codes[:, 0, :4, :2])
  assert np.array_equal(partial[:, 1, 0, :2], codes[:, 1, 0, :2])
  car = np.random.default_rng(7).normal(0.0, 0.8, net.car.shape) * engine_weights.channel_ar_mask(2)
  causal = dataclasses.replace(net, channel_causal=True, car=car)
  for n in (net, causal):  # float32 against the float64 reference
    error = naive.naive_probabilities(n, codes) - full_forward.full_forward(n, codes)
    assert np.abs(error).max() < 1e-5
  data = naive.naive_encode(causal, codes)
  assert np.array_equal(naive.naive_decode(causal, data, codes.shape), codes)
