"""The codec's probability engine against the original model, and its determinism and causality."""
import dataclasses
import os

import numpy as np
import pytest

from helpers import README_FIDELITY, REFERENCE_DIR
from entropy_coder import model_files
from entropy_coder.codec import arith, engine, full_forward, engine_weights
from entropy_coder.trainer import spec
from entropy_coder.trainer.config import ModelConfig

# Engine (float32) against the float64 full forward: a few float32 roundings of P in (0, 1).
FLOAT32_TOLERANCE = 5e-6


def _load(name):
  return dict(np.load(os.path.join(REFERENCE_DIR, name), allow_pickle=False))


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp('reference_model'))
  model_files.write_model_files(model_dir, _load('weights_step25284.npz'),
                                {'layer_depth': 2, 'layer_count': 8})
  net = engine_weights.build_network(model_files.read_model_files(model_dir))
  return net, _load('samples.npz')['codes'], _load('outputs_step25284.npz')


def _causal_net(net, seed=7, scale=0.8):
  """The reference network with random nonzero channel_ar weights (masked: j < c only)."""
  rng = np.random.default_rng(seed)
  car = rng.normal(0.0, scale, net.car.shape) * engine_weights.channel_ar_mask(net.layer_depth)
  return dataclasses.replace(net, channel_causal=True, car=car)


def test_full_forward_matches_the_original_probabilities(reference):
  net, codes, outputs = reference
  probs = full_forward.full_forward(net, codes)
  assert np.abs(probs - outputs['probs']).max() <= README_FIDELITY
  per_sample = full_forward.code_length_bits(probs, codes) / codes[0].size
  np.testing.assert_allclose(per_sample, outputs['code_length_per_sample'], rtol=0, atol=1e-6)


def test_incremental_engine_matches_the_original_and_the_full_forward(reference):
  net, codes, outputs = reference
  p_model, p_coded = engine.engine_probabilities(net, codes)
  assert np.abs(p_model - outputs['probs']).max() <= README_FIDELITY
  # The engine computes in float32, the full forward in float64.
  assert np.abs(p_model - full_forward.full_forward(net, codes)).max() <= FLOAT32_TOLERANCE
  per_sample = full_forward.code_length_bits(p_model, codes) / codes[0].size
  np.testing.assert_allclose(per_sample, outputs['code_length_per_sample'], rtol=0, atol=1e-6)
  # The coder's probabilities: the model's, on the 1/2^16 grid, never 0 or 1.
  grid = p_coded * 65536
  assert np.array_equal(grid, np.round(grid)) and grid.min() >= 1 and grid.max() <= 65535
  assert np.abs(p_coded - p_model).max() <= 0.5 / 65536 + 1e-12


def test_probabilities_do_not_depend_on_the_batch(reference):
  net, codes, _ = reference
  _, batch_of_all = engine.engine_probabilities(net, codes)
  _, batch_of_3 = engine.engine_probabilities(net, codes[5:8])
  _, alone = engine.engine_probabilities(net, codes[6:7])
  assert np.array_equal(batch_of_all[5:8], batch_of_3)  # bit for bit, not approximately
  assert np.array_equal(batch_of_all[6], alone[0])
  p_model, _ = engine.engine_probabilities(net, codes[:2])
  assert np.array_equal(p_model, engine.engine_probabilities(net, codes[:2])[0])


def test_engine_handles_codes_of_other_sizes_as_the_full_forward(reference):
  net, codes, _ = reference
  for shape in [(1, 1, 2), (1, 9, 4), (8, 1, 4), (5, 7, 6), (13, 11, 16)]:
    rng = np.random.default_rng(sum(shape))
    sample = (rng.random((3,) + shape) < 0.4).astype(np.uint8)
    p_model, _ = engine.engine_probabilities(net, sample)
    assert np.abs(p_model - full_forward.full_forward(net, sample)).max() <= FLOAT32_TOLERANCE, shape


def test_deterministic_math_is_accurate_and_lane_independent():
  x = np.concatenate([np.linspace(-30, 30, 20001), [0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0]])
  x = x.astype(np.float32)
  exact = x.astype(np.float64)
  for name, want, tolerance in [('exp', np.exp(np.clip(exact, -80, 80)), dict(rtol=3e-7)),
                                ('tanh', np.tanh(exact), dict(rtol=0, atol=3e-7)),
                                ('sigmoid', 1 / (1 + np.exp(-exact)), dict(rtol=0, atol=3e-7))]:
    scalar = np.array([_SCALAR[name](v) for v in x], dtype=np.float32)
    np.testing.assert_allclose(scalar, want, **tolerance)
    if name == 'exp':
      continue
    # The same bits whether a value is computed alone, in a short row or in a long SIMD row.
    for length in (1, 3, 17, x.size):
      rows = x[:length * (x.size // length)].copy().reshape(-1, length)
      for row in rows:
        _ROW[name](row)
      assert np.array_equal(rows.reshape(-1), scalar[:rows.size]), (name, length)


def _scalar(fn):
  import numba  # pylint: disable=g-import-not-at-top
  return numba.njit(lambda v: fn(v))


def _row(fn):
  import numba  # pylint: disable=g-import-not-at-top
  return numba.njit(lambda row: fn(row))


_SCALAR = {'exp': _scalar(arith.exp_s), 'tanh': _scalar(arith.tanh_s), 'sigmoid': _scalar(arith.sigmoid_s)}
_ROW = {'tanh': _row(arith.tanh_), 'sigmoid': _row(arith.sigmoid_)}


def test_channel_causal_engine_matches_its_full_forward(reference):
  net, codes, _ = reference
  causal = _causal_net(net)
  p_model, _ = engine.engine_probabilities(causal, codes[:3])
  assert np.abs(p_model - full_forward.full_forward(causal, codes[:3])).max() <= FLOAT32_TOLERANCE
  plain, _ = engine.engine_probabilities(net, codes[:3])
  # Channel 0 never sees channel_ar; channel 1 does, so its probabilities move.
  assert np.array_equal(p_model[..., 0::2], plain[..., 0::2])
  assert np.abs(p_model[..., 1::2] - plain[..., 1::2]).max() > 1e-3


def test_channel_causal_zero_weights_equal_the_original_head(reference):
  net, codes, _ = reference
  causal_zero = dataclasses.replace(net, channel_causal=True, car=np.zeros_like(net.car))
  np.testing.assert_allclose(engine.engine_probabilities(causal_zero, codes[:2])[0],
                             engine.engine_probabilities(net, codes[:2])[0], rtol=0, atol=1e-15)


@pytest.mark.parametrize('layer_depth', [2, 3])
def test_channel_causal_bit_sees_earlier_bits_of_its_pixel_only(layer_depth):
  """Flipping bit j of pixel p changes P(bit c of p) iff j < c; later pixels may change."""
  rng = np.random.default_rng(layer_depth)
  net = _random_causal_net(layer_depth, rng)
  shape = (4, 5, 2 * layer_depth)
  code = (rng.random((1,) + shape) < 0.5).astype(np.uint8)
  base, _ = engine.engine_probabilities(net, code)
  y, x = 2, 3
  for layer in range(2):
    for j in range(layer_depth):
      flipped = code.copy()
      flipped[0, y, x, layer * layer_depth + j] ^= 1
      probs, _ = engine.engine_probabilities(net, flipped)
      for c in range(layer_depth):
        changed = probs[0, y, x, layer * layer_depth + c] != base[0, y, x, layer * layer_depth + c]
        assert changed == (j < c), (layer, j, c)
      # Nothing earlier in raster order (nor any earlier layer) may move.
      earlier = np.zeros(shape[:2], dtype=bool)
      earlier[:y] = True
      earlier[y, :x] = True
      layer_slice = slice(layer * layer_depth, (layer + 1) * layer_depth)
      assert np.array_equal(probs[0][earlier][:, layer_slice], base[0][earlier][:, layer_slice])
      assert np.array_equal(probs[0, ..., :layer * layer_depth], base[0, ..., :layer * layer_depth])


def _random_causal_net(layer_depth, rng):
  """A random channel-causal model (weights of the right shapes), as a Network."""
  shapes = spec.weight_shapes(ModelConfig(layer_depth=layer_depth, layer_count=2,
                                          channel_causal=True))
  weights = {name: rng.normal(0, 0.7, shape).astype(np.float32) for name, shape in shapes.items()}
  files = model_files.ModelFiles(weights=weights, fingerprint='0' * 64, path='<random>',
                                 model_config={'layer_depth': layer_depth, 'layer_count': 2,
                                               'coded_layer_count': 0, 'channel_causal': True})
  return engine_weights.build_network(files)


def test_masked_taps_are_ignored_even_when_stored_unmasked(reference):
  """The reference stores masked kernels unmasked: garbage in masked taps must not matter."""
  net, codes, _ = reference
  weights = _load('weights_step25284.npz')
  kernel = weights['layer0/brnn/adaptation0_masked7x7/kernel'].copy()
  kernel[3, 3:] = 100.0
  kernel[4:] = -100.0
  weights['layer0/brnn/adaptation0_masked7x7/kernel'] = kernel
  weights['layer0/brnn/row_lstm/input_conv/kernel'][:, 2] = 50.0
  files = model_files.ModelFiles(weights=weights, model_config=dict(
      layer_depth=2, layer_count=8, coded_layer_count=0, channel_causal=False),
                                 fingerprint='0' * 64, path='<garbage taps>')
  garbage = engine_weights.build_network(files)
  assert np.array_equal(engine.engine_probabilities(garbage, codes[:1])[0],
                        engine.engine_probabilities(net, codes[:1])[0])


@pytest.mark.parametrize('causal', [False, True])
def test_known_layers_decode_as_if_decoded(reference, causal):
  """decode(known=...) feeds the given layers without asking for their bits, and the other
  layers see exactly the probabilities (and so decode exactly the bits) of a full decode."""
  net, codes, _ = reference
  net = _causal_net(net) if causal else net
  codes = codes[:3, :9, :11]
  batch, height, width, depth = codes.shape
  cd = net.layer_depth
  layers = depth // cd
  known = {1: codes[..., spec.layer_channels(1, cd)], 4: codes[..., spec.layer_channels(4, cd)]}
  probs = {}

  def keep(store):
    def layer_done(k, out_p, out_q, bits):
      store[k] = (out_q.copy(), bits.copy())
    return layer_done

  engine.ChunkCoder(net, batch, height, width, layers).encode(codes, keep(probs))
  asked = []
  read = {k: 0 for k in probs}  # bits handed out per layer: they come in coding order
  current = [None]

  def decode_bits(p):
    k = current[0]
    asked.append(k)
    read[k] += p.size
    return probs[k][1][read[k] - p.size:read[k]]

  seen = {}
  # The decoder asks layer by layer; row_done's sequence says which layer it is in.
  order = [k for k in range(layers) if k not in known]

  class Layers:
    def __init__(self):
      self.i = 0
      current[0] = order[0]

    def row_done(self, k, y):
      if k not in known and y == height - 1 and self.i + 1 < len(order):
        self.i += 1
        current[0] = order[self.i]

  tracker = Layers()
  decoded = engine.ChunkCoder(net, batch, height, width, layers).decode(
      decode_bits, keep(seen), tracker.row_done, known=known)
  assert np.array_equal(decoded, codes)
  assert set(asked) == set(order)
  for k in range(layers):
    assert np.array_equal(seen[k][0], probs[k][0])
