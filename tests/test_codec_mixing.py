"""Version 4's mixed model stream (codec/mixing.py): what it learns, that both sides agree on
every schedule and batch, and that a damaged stream is caught."""
import numpy as np
import pytest

from entropy_coder import codec
from entropy_coder.codec import api, bitstream, mixing
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError
from helpers import causal_reference_model, reference_model
from hostile_files import with_table


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  """(the reference model, a channel-causal one made from it)."""
  files = reference_model(str(tmp_path_factory.mktemp('reference_model')))
  return files, causal_reference_model(files, str(tmp_path_factory.mktemp('causal')), seed=5)


@pytest.fixture(scope='module')
def model(models):
  return models[0]


def _smooth(seed, shape, flip=0.03):
  """Codes the reference model has never seen: each bit repeats its left neighbour's but for a
  few flips (long runs along the rows), every channel on its own."""
  rng = np.random.default_rng(seed)
  height, width, depth = shape
  flips = rng.random(shape) < flip
  flips[:, 0] = rng.random((height, depth)) < 0.5
  return (np.cumsum(flips, axis=1) % 2).astype(np.uint8)


def test_the_mixer_learns_what_the_model_does_not_know(model):
  """On runs along the rows, which no training taught the model: the model's stream and the
  order-0 fallback (version 3) cost ~1 bit a bit; version 4's contexts learn the runs on the way
  (each bit's left neighbour), so the file is a fraction of it, and still round-trips."""
  code = _smooth(1, (40, 64, 16))
  v3, stats3 = codec.compress_with_stats([code], model, format_version=3)
  v4, stats4 = codec.compress_with_stats([code], model)
  assert codec.read_header(v4).version == 4
  assert stats3.bits_per_bit > 0.9
  assert stats4.bits_per_bit < 0.5 * stats3.bits_per_bit, (stats3, stats4)
  assert stats4.theoretical_bits == stats3.theoretical_bits  # the model's own figure, unchanged
  assert stats4.model_code_bits == code.size                 # all in the mixed model stream
  assert np.array_equal(codec.decompress(v4, model)[0], code)


@pytest.mark.parametrize('shape', [(1, 1, 16), (1, 9, 16), (9, 1, 16), (2, 3, 16), (5, 13, 8),
                                   (17, 6, 16)])
def test_mixed_streams_round_trip_on_edge_shapes_and_both_model_kinds(models, shape):
  """Wavefront edge cases (one pixel, one row, one column, W < 4, odd sizes), channel-causal
  too, several codes per chunk (one shared mixer) and in compress_each (a mixer stream per
  code): every decoder rebuilds exactly the encoder's codes."""
  codes = [_smooth(seed, shape, 0.2) for seed in range(3)]
  codes.append(synthetic.generate_codes(seed=4, indices_or_start=[0], shape=shape)[0])
  for files in models:
    data = codec.compress(codes, files)
    assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(data, files), codes))
    each = list(api.compress_each([([c], bitstream.SOURCE_API, 0) for c in codes], files))
    assert [d for d, _ in each] == [codec.compress([c], files) for c in codes]
    decoded = list(api.decompress_each([(d, f'{i}.nec') for i, (d, _) in enumerate(each)], files))
    assert all(np.array_equal(got[0][0], want) for got, want in zip(decoded, codes))


def test_decompress_each_batches_every_version_and_reports_what_each_file_alone_gives(
    model, monkeypatch):
  """Version 3 and 4 one-code files of one shape side by side: one shared engine batch per
  version (a batch takes one kind of stream), and each file's codes, stats and header exactly
  what decompress_with_stats gives it alone (the coded figure of a version-4 file is its mixed
  stream's own)."""
  codes = list(synthetic.generate_codes(seed=8, indices_or_start=0, count=6, shape=(8, 12, 16)))
  files = [codec.compress([c], model, format_version=3 + i % 2) for i, c in enumerate(codes)]
  assert [codec.read_header(f).version for f in files] == [3, 4] * 3
  assert not any(codec.read_header(f).chunks[0].methods for f in files)  # all in the model stream
  batches = []
  real = api._decode_separately  # pylint: disable=protected-access

  def spy(net, shape, payloads, sources, with_theory, version):
    batches.append((version, len(payloads)))
    return real(net, shape, payloads, sources, with_theory, version)

  monkeypatch.setattr(api, '_decode_separately', spy)
  decoded = list(api.decompress_each([(f, f'{i}.nec') for i, f in enumerate(files)], model))
  assert sorted(batches) == [(3, 3), (4, 3)]
  for (got_codes, stats, header), data, want in zip(decoded, files, codes):
    alone = codec.decompress_with_stats(data, model)
    assert np.array_equal(got_codes[0], want) and np.array_equal(alone[0][0], want)
    assert stats == alone[1] and header == alone[2]
    if header.version == 4:  # the coded ideal is the mixed stream's, not the model's theory
      assert stats.coded_ideal_bits != stats.theoretical_bits and 0 < stats.gap < 0.05


def _with_stream_length(data, change):
  """A one-code version-4 file whose table says the model stream is `change` bytes longer
  (the payload grown or cut to match, every check byte valid)."""
  header = codec.read_header(data)
  chunk = header.chunks[0]
  assert not chunk.methods and len(data) == header.header_size + chunk.payload_bytes
  return with_table(data, bitstream.varint(chunk.payload_bytes + change), change)


@pytest.mark.parametrize('change', [-1, 1, 3])
def test_a_mixed_stream_that_is_not_exactly_its_length_is_refused(model, change):
  code = _smooth(2, (12, 16, 16), 0.1)
  data = codec.compress([code], model)
  forged = _with_stream_length(data, change)
  codec.read_header(forged)  # a valid container: the stream itself must give it away
  with pytest.raises(UserError) as caught:
    codec.decompress(forged, model, source='x.nec')
  message = str(caught.value)
  assert '\n' not in message and message.startswith('x.nec'), message
  assert 'corrupt compressed stream' in message or 'CRC32' in message, message


def test_the_squash_and_stretch_tables_are_integers_that_invert_each_other():
  """The mixer's only nonlinearity is table lookups on integers (every machine computes the
  same q'): squash is monotone from 1 to 4095, and stretch(squash(d)) is within the table's
  step of d."""
  ds = np.arange(-2047, 2048)
  ps = np.array([mixing.squash(int(d)) for d in ds])
  assert ps.min() == 1 and ps.max() == 4095 and np.all(np.diff(ps) >= 0)
  assert mixing.STRETCH.dtype == np.int64 and mixing.STRETCH[2048] == 0
  for d, p in zip(ds[::97], ps[::97]):
    assert abs(mixing.STRETCH[p] - d) <= 128 or p in (1, 4095)


def test_compress_writes_the_version_asked_for(model, tmp_path, capsys):
  """`compress --format-version 3` writes the unmixed container (faster to decode, readable by
  older builds); the default is version 4; decompress reads both."""
  from entropy_coder import cli, codes_format  # pylint: disable=g-import-not-at-top
  code = _smooth(3, (10, 12, 16), 0.1)
  source = tmp_path / 'code.npz'
  codes_format.write_npz(str(source), code, 2)
  for flag, version in (([], 4), (['--format-version', '3'], 3)):
    target = tmp_path / f'v{version}.nec'
    assert cli.main(['compress', '--model', model.path, str(source), '-o', str(target)] + flag) == 0
    assert codec.read_header(target.read_bytes()).version == version
    restored = tmp_path / f'v{version}.npz'
    assert cli.main(['decompress', '--model', model.path, str(target), '-o', str(restored)]) == 0
    assert np.array_equal(codes_format.read_npz(str(restored))[0], code)
  capsys.readouterr()
  assert cli.main(['compress', '--model', model.path, str(source), '-o', str(tmp_path / 'x.nec'),
                   '--format-version', '1']) == 2
  assert 'invalid choice' in capsys.readouterr().err


def test_codes_deeper_than_the_mixer_sets_round_trip(tmp_path):
  """A model of more channels than MAX_CHANNEL_SETS (288: layer_depth 32, 9 layers; random
  weights): neighbouring channels share a mixer, and every code still decodes exactly, alone
  and in compress_each's shared batches."""
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import config as config_lib, spec  # pylint: disable=g-import-not-at-top
  config = config_lib.ModelConfig(layer_depth=32, layer_count=9)
  depth = config.layer_depth * config.layer_count
  assert depth > mixing.MAX_CHANNEL_SETS
  rng = np.random.default_rng(7)
  weights = {name: rng.normal(0, 0.3, shape).astype(np.float32)
             for name, shape in spec.weight_shapes(config).items()}
  model_files.write_model_files(str(tmp_path), weights, {'layer_depth': 32, 'layer_count': 9})
  files = model_files.read_model_files(str(tmp_path))
  codes = [_smooth(seed, (3, 5, depth), 0.2) for seed in range(2)]
  data = codec.compress(codes, files)
  assert codec.read_header(data).version == 4
  assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(data, files), codes))
  each = [d for d, _ in api.compress_each([([c], bitstream.SOURCE_API, 0) for c in codes], files)]
  decoded = list(api.decompress_each([(d, 'x.nec') for d in each], files))
  assert all(np.array_equal(got[0][0], want) for got, want in zip(decoded, codes))
