"""The ADAPTIVE fallback (docs/FORMAT.md, version 3): Krichevsky–Trofimov counts per channel,
coded with a small binary range coder, all in numba.

A block is one code's one layer, [N = H*W, C = layer_depth] bits in raster order [y][x][channel]
(the code's own order, whatever schedule the engine codes the model in). Each channel keeps its
own counts, from zero at the start of every block:

    P(bit = 1) = (n1 + 1/2) / (n + 1)    on the model's grid: q / 2^16, q in [Q_MIN, Q_MAX]

computed in integers (`kt_q`), so both sides get the same q, and coded with codec/binary_rc.py
(the decoder needs each bit before the next probability). `decode` insists that a segment is
used up exactly. Work bound: bitstream.max_adaptive_symbols.
"""
import numba
import numpy as np

from entropy_coder.codec.arith import JIT_OPTIONS as _JIT
from entropy_coder.codec import binary_rc
from entropy_coder.codec.binary_rc import Q_MAX, Q_MIN
from entropy_coder.codec.bitstream import PROB_ONE
from entropy_coder.errors import UserError, describe




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
def _encode(blocks, st, out):
  m_count, n_count, c_count = blocks.shape
  ones = np.zeros(c_count, np.int64)
  for m in range(m_count):
    ones[:] = 0
    for i in range(n_count):
      for c in range(c_count):
        bit = blocks[m, i, c]
        binary_rc.encode_bit(st, out, kt_q(ones[c], i), bit)
        if bit:
          ones[c] += 1


@numba.njit(**_JIT)
def _decode(data, st, out):
  m_count, n_count, c_count = out.shape
  binary_rc.decoder_init(st, data, 0, data.size)
  ones = np.zeros(c_count, np.int64)
  for m in range(m_count):
    ones[:] = 0
    for i in range(n_count):
      for c in range(c_count):
        bit = binary_rc.decode_bit(st, data, kt_q(ones[c], i))
        out[m, i, c] = bit
        ones[c] += bit


def costs(blocks):
  """blocks uint8 [M, N, C] -> float64 [M] adaptive code lengths (bits)."""
  return block_costs(np.ascontiguousarray(blocks, dtype=np.uint8), binary_rc.COST)


def encode(blocks):
  """blocks uint8 [M, N, C] {0,1} -> the segment's bytes."""
  blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
  st, out = binary_rc.new_encoder(), np.zeros(binary_rc.encoder_capacity(blocks.size), np.uint8)
  _encode(blocks, st, out)
  return binary_rc.finish(st, out)


def decode(data, shape, source):
  """The segment's bytes -> uint8 [M, N, C]; UserError naming `source` unless the segment
  decodes into exactly its own bytes (the caller bounds M*N*C by max_adaptive_symbols)."""
  out = np.empty(shape, np.uint8)
  st = binary_rc.new_decoder()
  _decode(np.frombuffer(data, np.uint8), st, out)
  if not binary_rc.used_exactly(st, len(data)):
    raise UserError(describe(source, 'corrupt adaptive segment (it does not decode into exactly '
                             'its own length; damaged file)'))
  return out
