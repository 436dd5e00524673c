"""The synthetic source: the original's rule exactly, seeded, and the fast kernel == the plain loop."""
import hashlib
import math
import os

import numpy as np
import pytest

from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError
from helpers import REFERENCE_DIR

# The rule written out again, independently of the module, as offsets -> expected bit
# (docs/ORIGINAL.md §3): rows y-1..y-3 at columns x-2..x of the same plane, planes d-1..d-4 at the
# same pixel.
_LINE = {(-1, -2): 0, (-1, -1): 1, (-1, 0): 0,
         (-2, -2): 1, (-2, -1): 1, (-2, 0): 0,
         (-3, -2): 1, (-3, -1): 0, (-3, 0): 0}
_DEPTH = {-1: 1, -2: 1, -3: 0, -4: 1}


def _votes(code):
  """Per bit: 1 if at least 6 of its causal-context bits differ from the templates."""
  height, width, depth = code.shape
  bits = code.tolist()
  votes = np.zeros(code.shape, dtype=np.uint8)
  for y in range(height):
    for x in range(width):
      for d in range(depth):
        mismatches = 0
        for (dy, dx), expected in _LINE.items():
          if y + dy >= 0 and x + dx >= 0:
            mismatches += bits[y + dy][x + dx][d] != expected
        for dd, expected in _DEPTH.items():
          if d + dd >= 0:
            mismatches += bits[y][x][d + dd] != expected
        votes[y, x, d] = mismatches >= 6
  return votes


def _check_agreement(codes, probability):
  """Bits equal their vote with `probability`, within 4 sigma, for vote 0 and vote 1 alike."""
  votes = np.stack([_votes(code) for code in codes])
  agree = votes == codes
  for name, selected in (('all', np.ones_like(agree)), ('vote 0', votes == 0),
                         ('vote 1', votes == 1)):
    n = int(selected.sum())
    rate = agree[selected].mean()
    sigma = math.sqrt(probability * (1 - probability) / n)
    assert abs(rate - probability) < 4 * sigma, (name, n, rate)
  return agree.size


def test_rule_fidelity_bits_follow_their_vote_with_probability_0_8():
  codes = synthetic.generate_codes(2024, 0, 8)  # 8 x 35 x 48 x 8 = 107,520 bits
  assert _check_agreement(codes, synthetic.KEEP_PROBABILITY_REALISED) >= 100_000


def test_the_test_rule_matches_the_original_generator_output():
  """The original's own samples (fixture) obey the rule as this file writes it: the check above
  is a check against the original, not against our reading of it."""
  path = os.path.join(REFERENCE_DIR, 'samples.npz')
  with np.load(path, allow_pickle=False) as data:
    codes = data['codes'][:8]
  assert codes.shape == (8,) + synthetic.DATASET_SHAPE
  _check_agreement(codes, synthetic.KEEP_PROBABILITY)


@pytest.mark.parametrize('shape', [(35, 48, 8), (5, 7, 3), (2, 3, 1), (1, 1, 1), (3, 1, 5),
                                   (4, 9, 2), (1, 6, 6), (7, 2, 9)])
def test_fast_generator_equals_plain_loop_fed_the_same_draws(shape):
  seed = 7
  indices = [0, 1, 63, 64, 200] if math.prod(shape) < 2000 else [0, 65]
  fast = synthetic.generate_codes(seed, indices, shape=shape)
  for code, index in zip(fast, indices):
    plain = synthetic.plain_generate(synthetic.uniform_draws(seed, index, shape))
    np.testing.assert_array_equal(code, plain, err_msg=f'sample {index} of shape {shape}')


def test_extreme_seeds_and_indices():
  shape = (4, 5, 6)
  for seed, index in ((0, 2**64 - 1), (2**64 - 1, 0), (2**63, 2**40 + 3)):
    fast = synthetic.generate_codes(seed, [index], shape=shape)[0]
    plain = synthetic.plain_generate(synthetic.uniform_draws(seed, index, shape))
    np.testing.assert_array_equal(fast, plain)


def test_sample_depends_only_on_seed_and_index():
  shape = (6, 7, 5)
  block = synthetic.generate_codes(11, 0, 200, shape=shape)
  np.testing.assert_array_equal(block, synthetic.generate_codes(11, 0, 200, shape=shape))
  picked = [199, 3, 64, 63, 128, 3]
  np.testing.assert_array_equal(synthetic.generate_codes(11, picked, shape=shape), block[picked])
  np.testing.assert_array_equal(synthetic.generate_codes(11, 150, 50, shape=shape), block[150:])
  other_seed = synthetic.generate_codes(12, 0, 200, shape=shape)
  assert (other_seed != block).any(axis=(1, 2, 3)).all()
  assert len({code.tobytes() for code in block}) == 200


def test_draws_are_uniform_16_bit_and_keep_probability_is_0_8():
  draws = np.concatenate([synthetic.uniform_draws(5, i, (35, 48, 8)).ravel() for i in range(8)])
  # 16 equal bins of the 16-bit range: chi-square with 15 dof stays far below 60 (p ~ 1e-7).
  counts = np.bincount(draws >> 12, minlength=16)
  expected = draws.size / 16
  assert ((counts - expected) ** 2 / expected).sum() < 60
  keep = (draws < synthetic.KEEP_THRESHOLD).mean()
  assert abs(keep - 0.8) < 4 * math.sqrt(0.16 / draws.size)
  assert abs(synthetic.KEEP_PROBABILITY_REALISED - 0.8) < 4e-6
  assert synthetic.plain_generate(np.full((3, 3, 2), synthetic.KEEP_THRESHOLD - 1,
                                          np.uint16)).sum() == 0  # all keep the vote 0
  assert synthetic.plain_generate(np.full((3, 3, 2), synthetic.KEEP_THRESHOLD,
                                          np.uint16)).all()  # all flip it


def test_plain_loop_takes_the_originals_float_uniforms():
  rng = np.random.default_rng(0)
  uniforms = rng.random((6, 5, 4))
  as_u16 = np.floor(uniforms * synthetic.DRAW_LEVELS).astype(np.uint16)
  # u < 0.8 and floor(u * 65536) < 52429 agree except within 3e-6 of 0.8.
  np.testing.assert_array_equal(synthetic.plain_generate(uniforms),
                                synthetic.plain_generate(as_u16))


# sha256 prefixes of uniform_draws(0, 0, DATASET_SHAPE) and generate_codes(0, 0, 3).
_DRAWS_DIGEST = 'ad23eb5d4000daee'
_CODES_DIGEST = '94cc5181c91071f5'


def test_stream_is_pinned():
  """Datasets made by earlier versions stay valid only while this stream is unchanged. If you
  change the stream on purpose, change GENERATOR_ID as well and update these digests."""
  assert synthetic.GENERATOR_ID == 'synthetic_model-v1/splitmix64-u16'
  draws = synthetic.uniform_draws(0, 0, synthetic.DATASET_SHAPE)
  codes = synthetic.generate_codes(0, 0, 3)
  assert hashlib.sha256(draws.astype('<u2').tobytes()).hexdigest()[:16] == _DRAWS_DIGEST
  assert hashlib.sha256(codes.tobytes()).hexdigest()[:16] == _CODES_DIGEST


def test_defaults_are_the_originals():
  assert synthetic.DATASET_SHAPE == (35, 48, 8)
  assert synthetic.SAMPLE_SHAPE == (31, 36, 8)
  assert synthetic.SAMPLE_LAYER_DEPTH == 2
  assert synthetic.generate_codes(0, 0, 1).shape == (1, 35, 48, 8)
  assert synthetic.generate_codes(0, []).shape == (0, 35, 48, 8)


@pytest.mark.parametrize('call', [
    lambda: synthetic.generate_codes(-1, 0, 1),
    lambda: synthetic.generate_codes(2**64, 0, 1),
    lambda: synthetic.generate_codes(0.5, 0, 1),
    lambda: synthetic.generate_codes(0, 0, -1),
    lambda: synthetic.generate_codes(0, [[1, 2]]),
    lambda: synthetic.generate_codes(0, [-1]),
    lambda: synthetic.generate_codes(0, 0, 1, shape=(3, 0, 2)),
    lambda: synthetic.generate_codes(0, 0, 1, shape=(3, 2)),
    lambda: synthetic.parse_shape('35,48'),
    lambda: synthetic.parse_shape('a,b,c'),
])
def test_bad_arguments_are_user_errors(call):
  with pytest.raises(UserError):
    call()


def test_parse_shape():
  assert synthetic.parse_shape('35,48,8') == (35, 48, 8)
  assert synthetic.parse_shape(' 1, 2 ,3') == (1, 2, 3)
