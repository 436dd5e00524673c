"""A binary range coder with 16-bit probabilities, in numba: one bit in, one bit out.

The coder of the ADAPTIVE segments (codec/adaptive.py) and of version 4's model stream
(codec/mixing.py). Both need each bit before the next probability, which rules out
constriction's batch calls (a microsecond each from Python); this runs inside the numba loops
that compute the probabilities, at a few ns a bit.

It is the LZMA range coder: 32-bit range, byte output, carry through a cache byte, and for
P(1) = q / 2^16 (q in [Q_MIN, Q_MAX], the model's own extremes) the split
bound = floor(range * (2^16 - q) / 2^16), whose rounding costs ~1e-7 bits a symbol. Its first
output byte is always 0 and is not stored; the decoder reads exactly the bytes the encoder
wrote (4 + one per renormalisation), so a caller can insist that a stream is used up exactly.
Work bound: bitstream.max_adaptive_symbols (at least ADAPTIVE_SHRINK_BITS of range per symbol).

The state lives in small int64 arrays so that a stream can be coded across many calls (the
decoder of version 4 codes one engine step per call):

    encoder  [low, range, cache, cache_size, pos]     out: uint8, pos bytes written so far
    decoder  [range, code, pos, end, failed]          data[pos:end] still to read
"""
import math

import numba
import numpy as np

from entropy_coder.codec.arith import JIT_OPTIONS as _JIT
from entropy_coder.codec.bitstream import MAX_SYMBOL_Q, PROB_ONE

Q_MAX = MAX_SYMBOL_Q                 # the model's own extremes (bitstream.MAX_SYMBOL_PROBABILITY)
Q_MIN = PROB_ONE - MAX_SYMBOL_Q
# -log2(q / 2^16) for every q: what this coder spends on a symbol coded with P = q / 2^16 (to
# ~1e-7 bits), the cost table of everything it codes (adaptive segments, the mixed stream).
COST = np.array([math.inf] + [-math.log2(q / PROB_ONE) for q in range(1, PROB_ONE + 1)])
_TOP = 1 << 32
_BOTTOM = 1 << 24

# encoder state fields
LOW, RANGE, CACHE, CACHE_SIZE, POS = 0, 1, 2, 3, 4
# decoder state fields
D_RANGE, D_CODE, D_POS, D_END, D_FAILED = 0, 1, 2, 3, 4


def new_encoder():
  return np.array([0, _TOP - 1, 0, 1, 0], np.int64)


def encoder_capacity(symbols):
  """Output bytes enough for `symbols` symbols: each costs at most -log2(Q_MIN / 2^16) < 11
  bits; 5 flush bytes."""
  return symbols * 11 // 8 + 16


@numba.njit(inline='always', **_JIT)
def _shift_low(st, out):
  low = st[LOW]
  if low < 0xFF000000 or low >= _TOP:
    carry = low >> 32
    temp = st[CACHE]
    pos = st[POS]
    while True:
      out[pos] = (temp + carry) & 0xFF
      pos += 1
      temp = 0xFF
      st[CACHE_SIZE] -= 1
      if st[CACHE_SIZE] == 0:
        break
    st[POS] = pos
    st[CACHE] = (low >> 24) & 0xFF
  st[CACHE_SIZE] += 1
  st[LOW] = (low & 0x00FFFFFF) << 8


@numba.njit(inline='always', **_JIT)
def encode_bit(st, out, q, bit):
  """Codes `bit` with P(1) = q / 2^16."""
  rng = st[RANGE]
  bound = (rng * (PROB_ONE - q)) >> 16
  if bit:
    st[LOW] += bound
    rng -= bound
  else:
    rng = bound
  while rng < _BOTTOM:
    rng <<= 8
    st[RANGE] = rng
    _shift_low(st, out)
  st[RANGE] = rng


@numba.njit(inline='always', **_JIT)
def encoder_flush(st, out):
  """Ends the stream; -> the bytes to store, out[1:pos] (out[0] is always 0)."""
  for _ in range(5):
    _shift_low(st, out)
  return st[POS]


def finish(st, out):
  """Flushes and returns the stream's bytes (the always-0 first byte left out)."""
  size = _flush(st, out)
  if out[0] != 0:
    raise AssertionError('range coder: the first byte must be 0')
  return out[1:size].tobytes()


@numba.njit(**_JIT)
def _flush(st, out):
  return encoder_flush(st, out)


@numba.njit(inline='always', **_JIT)
def decoder_init(st, data, start, end):
  """Starts decoding the stream data[start:end] (reads past its end read zeros)."""
  code = 0
  pos = start
  for _ in range(4):
    code = (code << 8) | (data[pos] if pos < end else 0)
    pos += 1
  st[D_RANGE] = _TOP - 1
  st[D_CODE] = code
  st[D_POS] = pos
  st[D_END] = end
  st[D_FAILED] = 1 if code >= _TOP - 1 else 0


@numba.njit(inline='always', **_JIT)
def decode_bit(st, data, q):
  """The next bit, coded with P(1) = q / 2^16. An impossible stream sets st[D_FAILED] and
  goes on (the caller checks; the work stays bounded by the symbols it asks for)."""
  rng = st[D_RANGE]
  if rng == 0:  # never started (no stream): fail rather than renormalise a zero range forever
    st[D_FAILED] = 1
    return 0
  code = st[D_CODE]
  bound = (rng * (PROB_ONE - q)) >> 16
  if code < bound:
    rng = bound
    bit = 0
  else:
    code -= bound
    rng -= bound
    bit = 1
  pos = st[D_POS]
  end = st[D_END]
  while rng < _BOTTOM:
    rng <<= 8
    code = (code << 8) | (data[pos] if pos < end else 0)
    pos += 1
  if code >= rng:
    st[D_FAILED] = 1
    code = 0
  st[D_RANGE] = rng
  st[D_CODE] = code
  st[D_POS] = pos
  return bit


def new_decoder():
  return np.zeros(5, np.int64)


def used_exactly(st, end):
  """Whether a finished decode read exactly its stream, up to data[end], and never saw an
  impossible code."""
  return not st[D_FAILED] and st[D_POS] == end
