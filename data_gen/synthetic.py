"""The synthetic code source of the original (docs/ORIGINAL.md §3), seeded, and 64 samples per word.

The rule (kept exactly): a code is filled plane by plane (d outermost), each plane in raster
order (y, then x). For every bit,

* v1 counts mismatches against `LINE_TEMPLATE` over rows y-1, y-2, y-3 and columns x-2, x-1, x
  of the same plane (the current row is never read),
* v2 counts mismatches against `DEPTH_TEMPLATE` at the same pixel in planes d-1 .. d-4,
* positions outside the code are skipped, the vote is v = [v1 + v2 >= 6],
* the bit is v with probability 0.8, else 1 - v.

What differs from the original is only where the randomness comes from and how fast it runs:

* **Seeded, counter-based draws.** Sample `i` of seed `s` reads its own stream of 16-bit draws,
  one per bit, that depends on nothing but `(s, i)` (`uniform_draws` materialises it). So any
  runner, worker count, shard count or bundle size gives the same sample `i`. The stream is
  SplitMix64 (Steele, Lea & Flood 2014) keyed per sample:
  `key = mix(mix(s) + (i + 1) * GOLDEN)`, word c = `mix(key + (c + 1) * GOLDEN)`, and draw
  j (the C-order index of bit (y, x, d) in [H, W, D]) is bits [16 (j % 4), 16 (j % 4) + 16) of
  word j // 4.
* **Keep-probability in integers.** A bit keeps its vote iff its draw is below
  `KEEP_THRESHOLD` = 52429, i.e. with probability 52429 / 65536 = 0.80000305 (3.1e-6 above
  0.8; the source's entropy moves from 0.721928 to 0.721922 bits/bit).
* **Bit-parallel kernel.** `generate_codes` runs a numba kernel that holds 64 samples in one
  uint64 word per bit position: the 13 mismatch tests are XORs with the templates, the vote
  count is a bit-sliced 4-bit adder, and `count >= 6` is `c3 | (c2 & c1)`. It is integer-only,
  so its output is the same on every call and every machine.

`plain_generate` is the rule as a plain per-bit loop fed explicit draws; tests check that the fast
kernel equals it bit for bit.
"""
import math
import numbers

import numba
import numpy as np

from entropy_coder import codes_format
from entropy_coder.data_gen.synthetic_defaults import DATASET_SHAPE, SAMPLE_LAYER_DEPTH, SAMPLE_SHAPE
from entropy_coder.errors import UserError

# DATASET_SHAPE, SAMPLE_SHAPE and SAMPLE_LAYER_DEPTH: the shapes [H, W, D] of the original's tools
# (gen_synthetic_dataset.py, gen_synthetic_single.py), defined in data_gen/synthetic_defaults.py.

# The rule of dataset/synthetic_model.py.
LINE_TEMPLATE = ((0, 1, 0),  # row y-1, columns x-2, x-1, x
                 (1, 1, 0),  # row y-2
                 (1, 0, 0))  # row y-3
DEPTH_TEMPLATE = (1, 1, 0, 1)  # planes d-1, d-2, d-3, d-4
VOTE_THRESHOLD = 6
KEEP_PROBABILITY = 0.8

# Bernoulli(0.8) from a 16-bit draw: keep the vote iff draw < KEEP_THRESHOLD.
DRAW_LEVELS = 1 << 16
KEEP_THRESHOLD = 52429
KEEP_PROBABILITY_REALISED = KEEP_THRESHOLD / DRAW_LEVELS  # 0.800003051...

# Name of the draw stream; the dataset manifest records it so a future change is detectable.
GENERATOR_ID = 'synthetic_model-v1/splitmix64-u16'

_MAX_U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_LANES = 64


# ---------------------------------------------------------------------------------------------
# Draws: the per-sample random stream, in plain numpy (the reference) and in numba (the kernel).

def _mix_np(z):
  """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
  z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
  return z ^ (z >> np.uint64(31))


def uniform_draws(seed, index, shape):
  """The 16-bit draws of sample `index` of `seed`: uint16 [H, W, D], one per bit.

  Plain numpy, independent of the kernel: tests feed these to `plain_generate` and compare.
  """
  shape = codes_format.check_shape(shape)
  seed = _check_u64(seed, 'seed')
  index = _check_u64(index, 'sample index')
  count = math.prod(shape)
  with np.errstate(over='ignore'):
    seed_key = _mix_np(np.array([seed], dtype=np.uint64))
    key = _mix_np(seed_key + np.uint64((index + 1) & _MAX_U64) * np.uint64(_GOLDEN))
    counters = np.arange(1, (count + 3) // 4 + 1, dtype=np.uint64)
    words = _mix_np(key + counters * np.uint64(_GOLDEN))
  draws = words.astype('<u8').view('<u2')  # little-endian: draw 4c + t is bits [16t, 16t+16)
  return draws[:count].astype(np.uint16).reshape(shape)


@numba.njit(cache=True, inline='always')
def _mix(z):
  z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
  return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _noise_words(seed, indices, first, lanes, keys, noise):
  """noise[j] bit k = 1 iff sample indices[first + k] flips bit j (its draw >= KEEP_THRESHOLD).

  Lanes are the inner loop so the four words a raw draw word feeds stay in registers; the
  comparisons are branch-free (a 20 % branch would mispredict all the time).
  """
  count = noise.shape[0]
  golden = np.uint64(_GOLDEN)
  threshold = np.uint64(KEEP_THRESHOLD)
  low16 = np.uint64(0xFFFF)
  seed_key = _mix(np.uint64(seed))
  for lane in range(lanes):
    keys[lane] = _mix(seed_key + (indices[first + lane] + np.uint64(1)) * golden)
  for c in range((count + 3) // 4):
    flip0 = np.uint64(0)
    flip1 = np.uint64(0)
    flip2 = np.uint64(0)
    flip3 = np.uint64(0)
    step = np.uint64(c + 1) * golden
    for lane in range(lanes):
      word = _mix(keys[lane] + step)
      shift = np.uint64(lane)
      flip0 |= np.uint64((word & low16) >= threshold) << shift
      flip1 |= np.uint64(((word >> np.uint64(16)) & low16) >= threshold) << shift
      flip2 |= np.uint64(((word >> np.uint64(32)) & low16) >= threshold) << shift
      flip3 |= np.uint64((word >> np.uint64(48)) >= threshold) << shift
    j = 4 * c
    noise[j] = flip0
    if j + 1 < count:
      noise[j + 1] = flip1
    if j + 2 < count:
      noise[j + 2] = flip2
    if j + 3 < count:
      noise[j + 3] = flip3


# ---------------------------------------------------------------------------------------------
# The rule on 64 samples at once.

@numba.njit(cache=True, inline='always')
def _count_add(c0, c1, c2, c3, term):
  """Adds a 0/1 word `term` to the bit-sliced 4-bit counters (c3 c2 c1 c0); 13 < 16 terms."""
  carry = c0 & term
  c0 ^= term
  carry2 = c1 & carry
  c1 ^= carry
  carry3 = c2 & carry2
  c2 ^= carry2
  c3 |= carry3
  return c0, c1, c2, c3


@numba.njit(cache=True)
def _rule_words(noise, height, width, depth, state):
  """Fills state[(y*W + x)*D + d] (one bit per sample) in the original's order d -> y -> x."""
  ones = ~np.uint64(0)
  # Template bit 1 means "a 0 here is a mismatch": XOR with all-ones; template 0: the bit itself.
  line = np.array([[0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=np.uint64) * ones
  planes = np.array([1, 1, 0, 1], dtype=np.uint64) * ones
  for d in range(depth):
    for y in range(height):
      for x in range(width):
        c0 = np.uint64(0)
        c1 = np.uint64(0)
        c2 = np.uint64(0)
        c3 = np.uint64(0)
        for dy in range(3):
          row = y - 1 - dy
          if row < 0:
            break
          for dx in range(3):
            col = x - 2 + dx
            if col < 0:
              continue
            term = state[(row * width + col) * depth + d] ^ line[dy, dx]
            c0, c1, c2, c3 = _count_add(c0, c1, c2, c3, term)
        for delta in range(4):
          plane = d - 1 - delta
          if plane < 0:
            break
          term = state[(y * width + x) * depth + plane] ^ planes[delta]
          c0, c1, c2, c3 = _count_add(c0, c1, c2, c3, term)
        vote = c3 | (c2 & c1)  # count >= 6 == 0b0110
        j = (y * width + x) * depth + d
        state[j] = vote ^ noise[j]


@numba.njit(cache=True, nogil=True)  # nogil: threaded callers (Beam multi_threading) overlap
def _generate_kernel(seed, indices, height, width, depth, out):
  """out[n] = code of sample indices[n], [n, H*W*D] uint8, 64 samples per pass."""
  total = indices.shape[0]
  count = height * width * depth
  keys = np.zeros(_LANES, dtype=np.uint64)
  noise = np.zeros(count, dtype=np.uint64)
  state = np.zeros(count, dtype=np.uint64)
  for first in range(0, total, _LANES):
    lanes = min(_LANES, total - first)
    _noise_words(seed, indices, first, lanes, keys, noise)
    _rule_words(noise, height, width, depth, state)
    for lane in range(lanes):
      shift = np.uint64(lane)
      row = out[first + lane]
      for j in range(count):
        row[j] = np.uint8((state[j] >> shift) & np.uint64(1))


# ---------------------------------------------------------------------------------------------
# Public API.

def generate_codes(seed, indices_or_start, count=None, shape=DATASET_SHAPE):
  """Codes of the given samples of `seed`: uint8 [n, H, W, D] in {0, 1}.

  `generate_codes(s, start, count)` gives samples start .. start+count-1;
  `generate_codes(s, [i, j, ...])` gives exactly those. Sample i depends only on (s, i).
  """
  shape = codes_format.check_shape(shape)
  seed = _check_u64(seed, 'seed')
  if count is None:
    indices = np.asarray(indices_or_start)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
      raise UserError(f'sample indices must be a 1-D sequence of ints, got {indices_or_start!r}')
    if indices.size and (indices.min() < 0 or int(indices.max()) > _MAX_U64):
      raise UserError('sample indices must be in [0, 2**64)')
    indices = indices.astype(np.uint64)
  else:
    start = _check_u64(indices_or_start, 'start index')
    count = _check_count(count)
    if start + count - 1 > _MAX_U64:
      raise UserError('sample indices must be in [0, 2**64)')
    indices = np.arange(count, dtype=np.uint64) + np.uint64(start)
  out = np.empty((indices.size, math.prod(shape)), dtype=np.uint8)
  if indices.size:
    _generate_kernel(np.uint64(seed), np.ascontiguousarray(indices), *shape, out)
  return out.reshape((indices.size,) + shape)


def plain_generate(uniform_draws, shape=None):  # pylint: disable=redefined-outer-name
  """The rule as a literal per-bit loop, fed explicit draws: uint8 [H, W, D].

  `uniform_draws` is uint16 [H, W, D] (keep the vote iff draw < KEEP_THRESHOLD, as the fast
  generator does) or float in [0, 1) (keep iff u < 0.8, as the original's `np.random.rand()`).
  Slow; the reference for tests only.
  """
  draws = np.asarray(uniform_draws)
  height, width, depth = codes_format.check_shape(draws.shape if shape is None else shape)
  draws = draws.reshape(height, width, depth)
  if np.issubdtype(draws.dtype, np.floating):
    keeps = draws < KEEP_PROBABILITY
  else:
    keeps = draws < KEEP_THRESHOLD
  code = np.zeros((height, width, depth), dtype=np.uint8)
  for d in range(depth):
    for y in range(height):
      for x in range(width):
        v1 = 0
        for dy, expected_row in enumerate(LINE_TEMPLATE):
          row = y - 1 - dy
          if row < 0:
            continue
          for dx, expected in enumerate(expected_row):
            col = x - 2 + dx
            if col < 0 or col >= width:
              continue
            v1 += int(code[row, col, d] != expected)
        v2 = 0
        for delta, expected in enumerate(DEPTH_TEMPLATE):
          plane = d - 1 - delta
          if plane < 0:
            continue
          v2 += int(code[y, x, plane] != expected)
        vote = 1 if v1 + v2 >= VOTE_THRESHOLD else 0
        code[y, x, d] = vote if keeps[y, x, d] else 1 - vote
  return code


def parse_shape(text, source='--shape'):
  """'H,W,D' -> (H, W, D) positive ints, or UserError naming `source`."""
  parts = [p.strip() for p in str(text).split(',')]
  try:
    shape = tuple(int(p) for p in parts)
  except ValueError:
    raise UserError(f'{source}: expected three positive ints "H,W,D", got "{text}"') from None
  if len(shape) != 3 or min(shape) < 1:  # the flag's syntax, told in the flag's own terms
    raise UserError(f'{source}: expected three positive ints "H,W,D", got "{text}"')
  # The rest (at most MAX_CODE_BITS: the generator holds a 16-bit draw per bit) is the one
  # shape check, entropy_coder.codes_format.check_shape.
  return codes_format.check_shape(shape, source)


def check_seed(seed):
  """A seed is an int in [0, 2**64)."""
  return _check_u64(seed, 'seed')


def _check_u64(value, name):
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise UserError(f'{name} must be an int in [0, 2**64), got {value!r}')
  value = int(value)
  if not 0 <= value <= _MAX_U64:
    raise UserError(f'{name} must be an int in [0, 2**64), got {value}')
  return value


def _check_count(count):
  if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
    raise UserError(f'sample count must be a non-negative int, got {count!r}')
  return int(count)
