"""Never worse than simple ([Real codes] §5): real version-3 bitstreams of codes the reference
model has never seen (noise, per-channel biased noise) are no bigger than raw or adaptive
(Krichevsky-Trofimov) coding plus a fixed overhead; codes it predicts well keep the model's
stream byte for byte; every mix of methods round-trips; damaged method fields and lying segment
lengths are one-line errors."""
import math
import os
import time

import numpy as np
import pytest

from helpers import causal_reference_model, reference_model
from hostile_files import refused_fast, table_offset, with_table
from entropy_coder import codec
from entropy_coder.codec import adaptive, bitstream
from entropy_coder.codec.bitstream import METHOD_ADAPTIVE, METHOD_MODEL, METHOD_RAW
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError

GOLDEN_OF = {version: os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                                   'codec_golden', f'reference_model_v{version}.nec')
             for version in (3, 4)}
REGENERATE = os.environ.get('REGENERATE_CODEC_GOLDEN') == '1'
# The fixed overhead of a version-3 file beside its raw or adaptive bits: the one-code header
# (<= 24 bytes, test_codec_roundtrip), the method field (1 + ceil(layers / 4) bytes), a segment
# length (<= 3 bytes below 2 MB) and the adaptive coder's 4 flush bytes; per chunk of a
# many-code file the same plus its samples varint. 32 bytes covers one code of up to 16 layers.
OVERHEAD_BYTES = 32
BIASES = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.95])


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  return reference_model(str(tmp_path_factory.mktemp('reference_model')))


@pytest.fixture(scope='module')
def causal(model, tmp_path_factory):
  return causal_reference_model(model, str(tmp_path_factory.mktemp('causal')), seed=3)


def _noise(seed, shape, p=0.5):
  return (np.random.default_rng(seed).random(shape) < p).astype(np.uint8)


def _kt_bits(codes):
  """Order-0 adaptive cost of each code, per channel, in closed form (not the coder's code):
  -log2 of Gamma(n0 + 1/2) Gamma(n1 + 1/2) / (pi Gamma(n + 1)) summed over channels."""
  total = 0.0
  for code in codes:
    flat = code.reshape(-1, code.shape[2])
    n = flat.shape[0]
    for n1 in flat.sum(axis=0):
      ln_p = math.lgamma(n - n1 + 0.5) + math.lgamma(n1 + 0.5) - math.lgamma(n + 1) - math.log(math.pi)
      total -= ln_p / math.log(2)
  return total


def _round_trips(data, model, codes):
  restored = codec.decompress(data, model)
  assert len(restored) == len(codes)
  for got, want in zip(restored, codes):
    assert got.shape == want.shape and np.array_equal(got, want)


def _methods(data):
  return [chunk.methods for chunk in codec.read_header(data).chunks]


@pytest.mark.parametrize('shape, count', [((20, 30, 8), 1), ((64, 48, 16), 1), ((9, 11, 4), 20)])
def test_pure_noise_is_never_bigger_than_raw(model, shape, count):
  codes = [_noise(seed, shape) for seed in range(count)]
  data, stats = codec.compress_with_stats(codes, model)
  raw_bytes = -(-sum(code.size for code in codes) // 8)
  assert stats.theoretical_bits_per_bit > 1.1  # the model is worse than raw on these
  assert stats.file_bytes <= raw_bytes + OVERHEAD_BYTES, (stats, raw_bytes)
  assert stats.model_code_bits == 0 and stats.fallback_code_bits == stats.code_bits
  # The payload gap is the coders' loss against the ideal of the methods used, never negative.
  assert 0 <= stats.gap < 0.01 and stats.coded_ideal_bits < stats.theoretical_bits
  _round_trips(data, model, codes)


@pytest.mark.parametrize('shape, count', [((20, 30, 8), 1), ((40, 56, 8), 1), ((12, 10, 8), 6)])
def test_biased_noise_costs_at_most_its_adaptive_order0_cost(model, shape, count):
  codes = [_noise(seed, shape, BIASES[:shape[2]]) for seed in range(count)]
  data, stats = codec.compress_with_stats(codes, model)
  kt_bytes = _kt_bits(codes) / 8
  assert stats.file_bytes <= kt_bytes + OVERHEAD_BYTES, (stats, kt_bytes)
  assert stats.file_bytes < 0.9 * stats.code_bits / 8 < stats.theoretical_bits / 8
  assert stats.adaptive_code_bits > 0
  assert 0 < stats.gap < 0.02 and stats.coded_ideal_bits < stats.code_bits
  _round_trips(data, model, codes)


def test_codes_the_model_predicts_well_keep_the_models_stream(model):
  codes = list(synthetic.generate_codes(seed=2017, indices_or_start=0, count=40, shape=(16, 16, 8)))
  codes.append(synthetic.generate_codes(seed=3, indices_or_start=[0], shape=(22, 48, 8))[0])
  v3, stats = codec.compress_with_stats(codes, model, format_version=3)
  v2 = codec.compress(codes, model, format_version=2)
  header, header_v2 = codec.read_header(v3), codec.read_header(v2)
  assert header.version == 3 and header_v2.version == 2
  assert all(chunk.methods == () for chunk in header.chunks)
  assert v3[header.header_size:] == v2[header_v2.header_size:]  # the same streams
  assert len(v3) == len(v2)                                     # no method fields
  assert stats.model_code_bits == stats.code_bits and stats.fallback_code_bits == 0
  assert stats.coded_ideal_bits == stats.theoretical_bits and stats.gap > 0
  one = codes[-1:]
  assert len(codec.compress(one, model, format_version=3)) == len(codec.compress(one, model, format_version=2))
  # Version 4 mixes: the model's stream still codes every layer, and the mixing learns enough
  # of these codes on the way to be smaller than the model alone.
  v4, stats4 = codec.compress_with_stats(codes, model)
  assert codec.read_header(v4).version == 4
  assert all(chunk.methods == () for chunk in codec.read_header(v4).chunks)
  assert stats4.model_code_bits == stats4.code_bits and stats4.payload_bytes < stats.payload_bytes
  assert stats4.theoretical_bits == stats.theoretical_bits


def _balanced(seed, shape):
  """Noise with exactly half ones per channel: the adaptive counts' worst case, where raw wins."""
  rng = np.random.default_rng(seed)
  height, width, depth = shape
  half = np.arange(height * width) % 2
  return np.stack([rng.permutation(half) for _ in range(depth)], axis=1).reshape(shape).astype(np.uint8)


def _mixed_code(seed, shape=(20, 24, 8)):
  """Layers 0-1 from the model's synthetic source, layer 2 biased noise, layer 3 balanced
  noise: the model, the adaptive counts and the raw bits each win a layer."""
  code = synthetic.generate_codes(seed=seed, indices_or_start=[0], shape=shape)[0].copy()
  code[..., 4:6] = _noise(seed, shape[:2] + (2,), np.array([0.04, 0.97]))
  code[..., 6:8] = _balanced(seed + 1, shape[:2] + (2,))
  return code


@pytest.mark.parametrize('count', [1, 5])
def test_every_method_mix_round_trips(model, count):
  codes = [_mixed_code(seed) for seed in range(count)]
  data, stats = codec.compress_with_stats(codes, model)
  assert _methods(data) == [(METHOD_MODEL, METHOD_MODEL, METHOD_ADAPTIVE, METHOD_RAW)]
  layer_bits = count * 20 * 24 * 2
  assert (stats.model_code_bits, stats.adaptive_code_bits, stats.raw_code_bits) == (
      2 * layer_bits, layer_bits, layer_bits)
  _round_trips(data, model, codes)
  restored, decoded, _ = codec.decompress_with_stats(data, model)
  assert decoded.theoretical_bits == pytest.approx(stats.theoretical_bits, rel=1e-12)
  assert decoded.coded_ideal_bits == pytest.approx(stats.coded_ideal_bits, rel=1e-12)
  assert decoded.gap == pytest.approx(stats.gap, rel=1e-9) and stats.gap > 0
  assert (decoded.model_code_bits, decoded.raw_code_bits) == (2 * layer_bits, layer_bits)
  # No model layer: decoded without the engine unless the model's figure is asked for.
  noise = [_noise(9, (7, 9, 4))]
  data = codec.compress(noise, model)
  assert _methods(data) == [(METHOD_RAW, METHOD_RAW)]
  _round_trips(data, model, noise)
  assert codec.decompress_with_stats(data, model)[1].theoretical_bits > 0


def test_mixed_shapes_and_methods_in_one_file(model):
  codes = ([_mixed_code(seed) for seed in range(3)] + [_noise(5, (6, 5, 8))]
           + list(synthetic.generate_codes(seed=4, indices_or_start=0, count=2, shape=(7, 7, 4))))
  data = codec.compress(codes, model, threads=2)
  assert sorted(set(_methods(data))) == sorted({(), (0, 0, 1, 2), (2, 2, 2, 2)})
  assert data == codec.compress(codes, model, threads=1)
  _round_trips(data, model, codes)


def test_channel_causal_method_mix_round_trips(causal):
  codes = [_mixed_code(seed, (6, 7, 8)) for seed in range(3)] + [_noise(2, (5, 4, 4))]
  data = codec.compress(codes, causal)
  assert codec.read_header(data).channel_causal
  assert any(METHOD_RAW in m for m in _methods(data)) and any(METHOD_ADAPTIVE in m for m in _methods(data))
  _round_trips(data, causal, codes)


def test_many_files_at_once_with_fallback_layers_are_the_files_of_each_alone(model):
  codes = [[_mixed_code(0)], [_noise(1, (10, 12, 8))],
           synthetic.generate_codes(seed=1, indices_or_start=[0], shape=(10, 12, 8))[:1],
           [_mixed_code(2)]]
  inputs = [(c, bitstream.SOURCE_API, 0) for c in codes]
  together = [data for data, _ in codec.compress_each(inputs, model, threads=2)]
  assert together == [codec.compress(c, model) for c in codes]
  for want, (restored, stats, _) in zip(codes, codec.decompress_each(
      [(data, f'f{i}.nec') for i, data in enumerate(together)], model)):
    assert np.array_equal(restored[0], want[0]) and stats.code_bits == want[0].size


def test_adaptive_coder_round_trips_and_costs_what_it_simulates():
  rng = np.random.default_rng(11)
  for shape in [(1, 1, 1), (3, 50, 2), (2, 3000, 4), (1, 20000, 1)]:
    blocks = (rng.random(shape) < rng.random(shape[2])).astype(np.uint8)
    if shape[1] == 20000:
      blocks[:] = 1  # the clip at the model's extreme q
    data = adaptive.encode(blocks)
    assert np.array_equal(adaptive.decode(data, shape, 'x'), blocks)
    simulated = adaptive.costs(blocks).sum()
    assert 8 * len(data) <= simulated + 40  # 4 flush bytes and rounding
    assert blocks.size <= bitstream.max_adaptive_symbols(len(data))
  with pytest.raises(UserError, match='corrupt adaptive segment'):
    adaptive.decode(data + b'\0', (1, 20000, 1), 'x')


def test_adaptive_work_bound_holds_for_the_cheapest_stream_and_is_tight():
  """The cheapest adaptive symbols (a constant channel at the clip) reach most of
  max_adaptive_symbols, and never more."""
  blocks = np.zeros((1, 400000, 1), np.uint8)
  data = adaptive.encode(blocks)
  assert 0.9 * bitstream.max_adaptive_symbols(len(data)) < blocks.size <= bitstream.max_adaptive_symbols(len(data))


@pytest.mark.parametrize('version', [3, 4])
def test_golden_bitstreams_with_fallback_are_stable(model, version):
  """A committed file of each version with all three methods (model, adaptive, raw) in several
  chunks: this build decodes it and writes the same bytes. Set REGENERATE_CODEC_GOLDEN=1 after a
  deliberate coder or format change."""
  codes = ([_mixed_code(seed, (6, 7, 8)) for seed in range(2)] + [_noise(3, (5, 4, 4))]
           + list(synthetic.generate_codes(seed=2024, indices_or_start=0, count=2, shape=(6, 7, 4))))
  data = codec.compress(codes, model, format_version=version)
  path = GOLDEN_OF[version]
  if REGENERATE:
    with open(path, 'wb') as f:
      f.write(data)
  with open(path, 'rb') as f:
    golden = f.read()
  assert codec.read_header(golden).version == version
  assert {m for c in codec.read_header(golden).chunks for m in c.methods} == {0, 1, 2}
  _round_trips(golden, model, codes)
  assert data == golden, 'bitstream changed: bump bitstream.CODER_ID or VERSION and regenerate'


# ---- hostile version-3 and 4 files (one table layout) ---------------------------------------------------------------------

def _one_code_file(model, code):
  """(file bytes, offset of the method field): a one-code file's table starts at byte 11."""
  data = codec.compress([code], model)
  return bytearray(data), table_offset(codec.read_header(data))


def _forge(model, code, table, payload_change=0):
  """The one-code file of `code` with its table after the shape replaced by `table` and the
  payload grown (zero bytes) or cut by payload_change, every check byte valid."""
  return with_table(codec.compress([code], model), table, payload_change)


def _refused(data, model, problem):
  """Refused with a one-line UserError naming `problem`, fast and before any decoding."""
  calls = []
  started = time.perf_counter()
  with pytest.raises(UserError) as caught:
    codec.decompress(bytes(data), model, progress=lambda done, _: calls.append(done), source='x.nec')
  message = str(caught.value)
  assert '\n' not in message and message.startswith('x.nec') and problem in message, message
  assert time.perf_counter() - started < 0.5 and not calls
  return message


def test_hostile_method_fields_and_segment_lengths(model):
  noise = _noise(4, (20, 30, 8))          # 4 layers, all RAW: 600 raw bytes
  data, offset = _one_code_file(model, noise)
  raw_len = bitstream.varint(600)
  assert bytes(data[offset:offset + 5]) == b'\x01\xaa' + raw_len + b'\x00'
  _round_trips(bytes(data), model, [noise])
  # A method 3, a trailing zero method byte: refused by the container alone.
  refused_fast(_forge(model, noise, b'\x01\xab' + raw_len + b'\x00'), model, 'invalid layer methods')
  refused_fast(_forge(model, noise, b'\x02\xaa\x00' + raw_len + b'\x00'), model, 'invalid layer methods')
  # Fewer raw bytes than the bits need: the work bound, before the model is read.
  refused_fast(_forge(model, noise, b'\x01\xaa' + bitstream.varint(599) + b'\x00', -1), model,
               'cannot come from')
  # More raw bytes than the layers fill, methods for a fifth layer, a model stream for no
  # MODEL layer, no model stream for MODEL layers: refused against the model, before decoding.
  _refused(_forge(model, noise, b'\x01\xaa' + bitstream.varint(601) + b'\x00', 1), model,
           'segment lengths do not fit')
  _refused(_forge(model, noise, b'\x02\xaa\x02' + raw_len + b'\x00'), model, 'methods for 5 layers')
  # (version 4 counts the model stream in bytes: 1 byte of stream for no MODEL layer)
  _refused(_forge(model, noise, b'\x01\xaa' + raw_len + b'\x01', 1), model, 'segment lengths do not fit')
  _refused(_forge(model, noise, b'\x01\x2a' + raw_len + b'\x00'), model, 'segment lengths do not fit')
  # A segment length that is not there: the parser stops at the end of the bytes.
  refused_fast(bytes(data[:offset + 2]), model, 'truncated')


def test_a_lying_adaptive_segment_is_caught(model):
  code = _noise(6, (20, 30, 8), BIASES)
  data, offset = _one_code_file(model, code)
  header = codec.read_header(bytes(data))
  chunk = header.chunks[0]
  assert set(chunk.methods) == {METHOD_ADAPTIVE}
  field = bitstream.method_field(chunk.methods)
  for change in (8, -1):
    size = chunk.adaptive_bytes + change
    forged = _forge(model, code, field + bitstream.varint(size) + b'\x00', change)
    message = _refused_after_decoding(forged, model)
    assert 'corrupt adaptive segment' in message or 'CRC32' in message, message


def _refused_after_decoding(data, model):
  started = time.perf_counter()
  with pytest.raises(UserError) as caught:
    codec.decompress(bytes(data), model, source='x.nec')
  assert time.perf_counter() - started < 2.0
  message = str(caught.value)
  assert '\n' not in message and message.startswith('x.nec'), message
  return message


def test_every_flipped_byte_of_a_mixed_file_is_reported_or_harmless(model):
  codes = [_mixed_code(1)]
  data = codec.compress(codes, model)
  assert _methods(data) and set(_methods(data)[0]) == {0, 1, 2}
  header_size = codec.read_header(data).header_size
  for position in list(range(header_size)) + list(range(header_size, len(data), 5)):
    for flip in (0x01, 0x80):
      damaged = bytearray(data)
      damaged[position] ^= flip
      try:
        restored = codec.decompress(bytes(damaged), model)
      except UserError as e:
        assert '\n' not in str(e)
        continue
      assert np.array_equal(restored[0], codes[0]), position


# ---- what users see: the model's figure and the coded figure, each named -------------------------

def test_real_compression_check_reports_the_models_figure_and_the_coded_one(model, tmp_path):
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import example_wire, tfrecord_files  # pylint: disable=g-import-not-at-top
  codes = [_noise(seed, (12, 16, 8), BIASES) for seed in range(4)]
  for split in ('train', 'eval'):
    os.makedirs(tmp_path / 'examples' / f'Split-{split}')
    tfrecord_files.write_gzip_tfrecords(str(tmp_path / 'examples' / f'Split-{split}' / 'data.gz'),
                                        [example_wire.encode_example(c) for c in codes])
  report = real_compression.check_real_compression(str(tmp_path / 'examples'), model.path,
                                                   str(tmp_path / 'out'))
  assert report['round_trip_ok'] and report['blessed'], report
  # The model's own figure (TFMA's code_length) is above 1; the file, fallback included, is not.
  assert report['theoretical_bits_per_bit'] > 1.0 > report['real_bits_per_bit']
  assert report['fallback_fraction'] == 1.0 and report['model_code_bits'] == 0
  assert report['adaptive_code_bits'] + report['raw_code_bits'] == report['code_bits']


def test_cli_json_and_text_name_the_coded_and_the_model_figures(model, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  source = str(tmp_path / 'code.npz')
  codes_format.write_npz(source, _mixed_code(3), layer_depth=2)

  def cli(*args):
    done = subprocess.run([sys.executable, '-m', 'entropy_coder.cli', *args], capture_output=True,
                          text=True, timeout=600, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert done.returncode == 0, done.stderr
    return done.stdout

  shown = json.loads(cli('compress', '--model', model.path, source, '-o', str(tmp_path / 'a.nec'),
                         '--json'))
  data = (tmp_path / 'a.nec').read_bytes()
  assert shown['file_bytes'] == len(data) and shown['code_bits'] == 20 * 24 * 8
  assert shown['coded_bits_per_bit'] == pytest.approx(8 * len(data) / shown['code_bits'])
  assert shown['model_theoretical_bits_per_bit'] > shown['coded_payload_bits_per_bit']
  assert (shown['model_code_bits'], shown['adaptive_code_bits'], shown['raw_code_bits']) == (
      2 * 960, 960, 960)
  text = cli('decompress', '--model', model.path, str(tmp_path / 'a.nec'), '-o',
             str(tmp_path / 'b.npz'))
  assert 'bits/bit coded' in text and 'model theory' in text
  assert 'coded by     model 50.0%, adaptive 25.0%, raw 25.0% of the bits' in text
  assert np.array_equal(codes_format.read_npz(str(tmp_path / 'b.npz'))[0], _mixed_code(3))
