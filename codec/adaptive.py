"""The ADAPTIVE fallback (docs/FORMAT.md, version 3): Krichevsky–Trofimov counts per channel,
coded with a small binary range coder, all in numba.

A block is one code's one layer, [N = H*W, C = layer_depth] bits in raster order [y][x][channel]
(the code's own order, whatever schedule the engine codes the model in). Each channel keeps its
own counts, from zero at the start of every block:

    P(bit = 1) = (n1 + 1/2) / (n + 1)    on the model's grid: q / 2^16, q in [Q_MIN, Q_MAX]

computed in integers (`kt_q`), so both sides get the same q. Why a coder of its own and not
constriction's: the decoder needs each bit before the next probability, and constriction called
once per symbol from Python costs about a microsecond; this coder runs in numba at a few ns a
bit. It is the LZMA range coder (32-bit range, byte output, carry through a cache byte) with
16-bit probabilities and bound = floor(range * q0 / 2^16), whose rounding costs ~1e-7 bits a
symbol. Its first output byte is always 0 and is not stored; the decoder reads exactly the bytes
the encoder wrote (4 + one per renormalisation), so `decode` can insist that a segment is used
up exactly. Work bound: bitstream.max_adaptive_symbols.
"""
import math

import numba
import numpy as np

from entropy_coder.codec.bitstream import MAX_SYMBOL_Q, PROB_ONE
from entropy_coder.errors import UserError, describe

Q_MAX = MAX_SYMBOL_Q                 # the model's own extremes (bitstream.MAX_SYMBOL_PROBABILITY)
Q_MIN = PROB_ONE - MAX_SYMBOL_Q
_TOP = 1 << 32
_BOTTOM = 1 << 24
_JIT = dict(nogil=True, cache=True)

# -log2(q / 2^16) for every q: the cost of a symbol coded with probability q / 2^16.
_COST = np.array([math.inf] + [-math.log2(q / PROB_ONE) for q in range(1, PROB_ONE + 1)])


@numba.njit(**_JIT)
def kt_q(ones, seen):
  """P(1) * 2^16 after `seen` bits of which `ones` were 1: round((2 ones + 1) / (2 seen + 2)),
  clipped to [Q_MIN, Q_MAX]."""
  q = ((2 * ones + 1) * PROB_ONE + seen + 1) // (2 * seen + 2)
  return min(max(q, Q_MIN), Q_MAX)


@numba.njit(**_JIT)
def block_costs(blocks, cost):
  """blocks uint8 [M, N, C] -> float64 [M]: each block's adaptive code length in bits."""
  m_count, n_count, c_count = blocks.shape
  out = np.zeros(m_count)
  ones = np.zeros(c_count, np.int64)
  for m in range(m_count):
    ones[:] = 0
    total = 0.0
    for i in range(n_count):
      for c in range(c_count):
        q = kt_q(ones[c], i)
        if blocks[m, i, c]:
          total += cost[q]
          ones[c] += 1
        else:
          total += cost[PROB_ONE - q]
    out[m] = total
  return out


@numba.njit(**_JIT)
def _shift_low(low, cache, cache_size, out, pos):
  if low < 0xFF000000 or low >= _TOP:
    carry = low >> 32
    temp = cache
    while True:
      out[pos] = (temp + carry) & 0xFF
      pos += 1
      temp = 0xFF
      cache_size -= 1
      if cache_size == 0:
        break
    cache = (low >> 24) & 0xFF
  cache_size += 1
  low = (low & 0x00FFFFFF) << 8
  return low, cache, cache_size, pos


@numba.njit(**_JIT)
def _encode(blocks, out):
  m_count, n_count, c_count = blocks.shape
  low, rng, cache, cache_size, pos = 0, _TOP - 1, 0, 1, 0
  ones = np.zeros(c_count, np.int64)
  for m in range(m_count):
    ones[:] = 0
    for i in range(n_count):
      for c in range(c_count):
        q = kt_q(ones[c], i)
        bound = (rng * (PROB_ONE - q)) >> 16
        if blocks[m, i, c]:
          low += bound
          rng -= bound
          ones[c] += 1
        else:
          rng = bound
        while rng < _BOTTOM:
          rng <<= 8
          low, cache, cache_size, pos = _shift_low(low, cache, cache_size, out, pos)
  for _ in range(5):
    low, cache, cache_size, pos = _shift_low(low, cache, cache_size, out, pos)
  return pos


@numba.njit(**_JIT)
def _decode(data, out):
  """-> bytes read (past the end of data reads zeros), or -1 if the stream is impossible."""
  m_count, n_count, c_count = out.shape
  size = data.size
  rng, code, pos = _TOP - 1, 0, 0
  for _ in range(4):
    code = (code << 8) | (data[pos] if pos < size else 0)
    pos += 1
  if code >= rng:
    return -1
  ones = np.zeros(c_count, np.int64)
  for m in range(m_count):
    ones[:] = 0
    for i in range(n_count):
      for c in range(c_count):
        q = kt_q(ones[c], i)
        bound = (rng * (PROB_ONE - q)) >> 16
        if code < bound:
          rng = bound
          out[m, i, c] = 0
        else:
          code -= bound
          rng -= bound
          out[m, i, c] = 1
          ones[c] += 1
        while rng < _BOTTOM:
          rng <<= 8
          code = (code << 8) | (data[pos] if pos < size else 0)
          pos += 1
        if code >= rng:
          return -1
  return pos


def costs(blocks):
  """blocks uint8 [M, N, C] -> float64 [M] adaptive code lengths (bits)."""
  return block_costs(np.ascontiguousarray(blocks, dtype=np.uint8), _COST)


def encode(blocks):
  """blocks uint8 [M, N, C] {0,1} -> the segment's bytes."""
  blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
  # Each symbol costs at most -log2(Q_MIN / 2^16) < 11 bits; 5 flush bytes.
  out = np.zeros(blocks.size * 11 // 8 + 16, np.uint8)
  size = _encode(blocks, out)
  if out[0] != 0:
    raise AssertionError('range coder: the first byte must be 0')
  return out[1:size].tobytes()


def decode(data, shape, source):
  """The segment's bytes -> uint8 [M, N, C]; UserError naming `source` unless the segment
  decodes into exactly its own bytes (the caller bounds M*N*C by max_adaptive_symbols)."""
  out = np.empty(shape, np.uint8)
  used = _decode(np.frombuffer(data, np.uint8), out)
  if used != len(data):
    raise UserError(describe(source, 'corrupt adaptive segment (it does not decode into exactly '
                             'its own length; damaged file)'))
  return out
