"""Version 4's model stream: the model's probability mixed with what the code teaches about itself.

A model trained on other pictures is miscalibrated on a new one, and a code holds regularities
no small model learns from a few training pictures (a flat background, a texture that repeats).
Context-mixing compressors learn them while they code; encoder and decoder do the same updates
in the same order, so nothing is sent. For every symbol, in the engine's coding order
(codec/schedule.py), the mixer turns the model's P(1) into the P(1) that is range-coded:

    q  (the model's P(1) on the 2^16 grid, from the engine)
    |
    +--stretch-----------------------------------------------+
    5 adaptive context slots (hashed, per stream) ---stretch-+--> sum w[g] * x --> squash --> p
    bias ----------------------------------------------------+                               |
                                                           q' = (p + 3 APM[g, ctx](p)) / 4 --+
                                                           clipped to [Q_MIN, Q_MAX]

    then, with the coded bit: every slot, the weights of channel g (online logistic regression)
    and the APM move toward it, and the bit is written into the mixer's own copy of the code.

g = k * layer_depth + c is the symbol's channel. The contexts read only the mixer's copy of the
code, which holds exactly the symbols coded before this one (all earlier layers; in this layer
the earlier steps, and the earlier channels of this pixel): the decoder has the same copy when
it decodes the symbol, by construction, whatever the contexts read. They are numeric: the
pixel's own bits before g (its value so far, MSB first, up to 12 channels back) alone, with the
W neighbour's and with the N neighbour's same window plus bit g, and against the LOCO-I median
predictor of W, N and NW over that window (where the value so far stands against the predicted
value and how busy the neighbourhood (NE too) is; and the value with the prediction). Two more
contexts (W and N together, the six neighbours' bit g) were measured and dropped: they gained
< 0.1 % on the real codes of docs/REAL_CODES.md. Bit planes and successive approximation, whose
channels are a value's bits MSB first, are what they fit best; on other codes they are
patterns of neighbouring bits.

Everything is integer arithmetic (stretch/squash tables, fixed-point weights), so both sides
and every machine get the same q' and the same bytes. Every symbol of every layer goes through
the mixer in coding order, whichever method codes its layer (codec/fallback.py): a layer coded
ADAPTIVE or RAW still updates it (`pass_layer`), so a layer's mixed cost does not depend on
the other layers' methods, and the per-layer choice stays exact.

State is per stream: one per chunk in a many-code file, one per code when compress_each codes
one-code files in a shared engine batch (each file is what it is alone).
"""
import typing

import numba
import numpy as np

from entropy_coder.codec.arith import JIT_OPTIONS as _JIT
from entropy_coder.codec import binary_rc
from entropy_coder.codec.binary_rc import Q_MAX, Q_MIN
from entropy_coder.codec.bitstream import PROB_ONE
from entropy_coder.codec import schedule as schedule_lib


# The logistic function at d = -2048, -1920, ..., 2048 (4096 / (1 + e^(-d/256)), rounded; ends
# kept inside 1..4095): squash interpolates it, stretch is its inverse. Integers, so that every
# machine computes the same tables.
_SQUASH_POINTS = np.array([1, 2, 4, 6, 10, 17, 27, 45, 74, 120, 194, 311, 488, 747, 1102, 1546,
                           2048, 2550, 2994, 3349, 3608, 3785, 3902, 3976, 4022, 4051, 4069,
                           4079, 4086, 4090, 4092, 4094, 4095], np.int64)

CONTEXTS = 5                         # adaptive context slots per symbol
INPUTS = CONTEXTS + 2                # + the model's stretch, a bias
WINDOW = 12                          # channels of a pixel's value a context reads
COUNT_LIMIT = 127                    # a slot adapts at 1/(n + 1.5) until n reaches this
LEARNING_RATE = 2                    # mixer: w += x * err * LEARNING_RATE / 2^12
APM_RATE = 7                         # APMs move 1/2^7 of the way
WEIGHT_ONE = 1 << 16
WEIGHT_LIMIT = 1 << 24
MIN_TABLE_BITS, MAX_TABLE_BITS = 10, 15
# Mixer weights and APM rows per channel, for at most this many channels (about 1.1 KB each, per
# stream): deeper codes share them between neighbouring channels, so a stream's tables stay
# small whatever the depth.
MAX_CHANNEL_SETS = 256


@numba.njit(inline='always', **_JIT)
def squash(d):
  """stretch domain (1/256 units) -> P(1) * 2^12 in [1, 4095]."""
  if d > 2047:
    return 4095
  if d < -2047:
    return 1
  w = d & 127
  i = (d >> 7) + 16
  return (_SQUASH_POINTS[i] * (128 - w) + _SQUASH_POINTS[i + 1] * w + 64) >> 7


@numba.njit(**_JIT)
def _stretch_table():
  table = np.empty(4096, np.int64)
  start = 0
  for d in range(-2047, 2048):
    p = squash(d)
    for j in range(start, p + 1):
      table[j] = d
    start = max(start, p + 1)
  for j in range(start, 4096):
    table[j] = 2047
  return table


STRETCH = _stretch_table()
# Slot update step 2^16 / (n + 1.5) for a slot that has seen n bits.
_RATE = np.array([int(PROB_ONE / (n + 1.5)) for n in range(COUNT_LIMIT + 1)], np.int64)
_APM_START = np.array([squash((j - 16) * 128) * 16 for j in range(33)], np.int64)


def table_bits(symbols):
  """Slots per context table, as a power of 2, for a stream of `symbols` symbols: a quarter of
  them, within [2^10, 2^15] (measured: 2^16 gains < 0.05 % on the real codes of
  docs/REAL_CODES.md and costs 25 % more time on a deep code, cache misses)."""
  return min(max(int(symbols).bit_length() - 2, MIN_TABLE_BITS), MAX_TABLE_BITS)


class Tables(typing.NamedTuple):
  """One mixer's state; S streams, a code [B, H, W, D]."""
  code: np.ndarray         # uint8 [B, H, W, D]: the symbols coded so far
  slots: np.ndarray        # uint32 [S, CONTEXTS, size]: per context slot P(1) * 2^16 << 8 | n,
                           # n the bits it has seen (at most COUNT_LIMIT)
  values: np.ndarray       # uint64 [B, H, W]: each pixel's coded bits, the latest lowest
  weights: np.ndarray      # int64 [S, sets, INPUTS]: a mixer per channel set
  apm: np.ndarray          # int64 [S, sets * 4 * 33]
  channel_set: np.ndarray  # int64 [D]: each channel's set (the channel itself up to
                           # MAX_CHANNEL_SETS channels; neighbouring channels share beyond)
  stream_of: np.ndarray    # int64 [B]: each sample's stream
  where: np.ndarray        # int64 [H*W*cd, 3]: (y, x, c) of each symbol of one sample in coding
                           # order (schedule.raster_positions)
  cost: np.ndarray         # float64 [S, L]: each stream's coded cost of each layer, bits


@numba.njit(inline='always', **_JIT)
def _value(values, code, b, y, x, lo, hi, coded):
  """Channels lo .. hi - 1 of pixel (b, y, x), whose first `coded` channels are coded, as an
  integer, MSB first."""
  shift = coded - hi
  if shift + hi - lo <= 64:
    return np.int64((values[b, y, x] >> np.uint64(shift)) & np.uint64((1 << (hi - lo)) - 1))
  v = 0
  for ch in range(lo, hi):
    v = (v << 1) | code[b, y, x, ch]
  return v


@numba.njit(inline='always', **_JIT)
def _hash(i, g, v, shift):
  """Slot of context i's value v for channel g: the top bits of a multiplicative hash."""
  h = ((np.uint64(v) << np.uint64(16)) ^ np.uint64(g << 4) ^ np.uint64(i)) * np.uint64(0x9E3779B97F4A7C15)
  h ^= h >> np.uint64(31)
  h *= np.uint64(0xD6E8FEB86659FD93)
  return np.int64(h >> np.uint64(shift))


# The bit length of 0 .. 127 (what _bucket looks up).
_BIT_LENGTH = np.array([int(v).bit_length() for v in range(128)], np.int64)


@numba.njit(inline='always', **_JIT)
def _bucket(value):
  """The bit length of value, at most 7."""
  return _BIT_LENGTH[min(value, 127)]


@numba.njit(inline='always', **_JIT)
def _log2(size):
  n = 0
  while (1 << n) < size:
    n += 1
  return n


@numba.njit(inline='always', **_JIT)
def _contexts(t, b, y, x, g, kend, out):
  """The context values of symbol (b, y, x, g) and the APM's two bits of context (returned). The pixel
  has its channels < g coded; its neighbours, all in earlier steps, their channels < kend (the
  end of the current layer)."""
  values, code = t.values, t.code
  width = code.shape[2]
  g0 = max(0, g - WINDOW)
  own = _value(values, code, b, y, x, g0, g, g)
  has_w, has_n = x > 0, y > 0
  vw = _value(values, code, b, y, x - 1, g0, g + 1, kend) if has_w else 0
  vn = _value(values, code, b, y - 1, x, g0, g + 1, kend) if has_n else 0
  vnw = _value(values, code, b, y - 1, x - 1, g0, g + 1, kend) if has_w and has_n else vn
  vne = _value(values, code, b, y - 1, x + 1, g0, g + 1, kend) if has_n and x + 1 < width else vn
  if not has_w:
    vw = vn
  if not has_n:
    vn, vnw, vne = vw, vw, vw
  high, low = max(vw, vn), min(vw, vn)
  if vnw >= high:
    pred = low
  elif vnw <= low:
    pred = high
  else:
    pred = vw + vn - vnw
  diff = own - (pred >> 1)
  sign = 0 if diff == 0 else (1 if diff > 0 else 2)
  busy = abs(vw - vnw) + abs(vn - vnw) + abs(vne - vn)
  out[0] = own
  out[1] = (own & 0xFF) | (vw << 8)
  out[2] = (own & 0xFF) | (vn << 8)
  out[3] = (sign | (_bucket(abs(diff)) << 2) | ((pred & 1) << 5)
            | (_bucket(busy >> max(0, g + 1 - g0 - 6)) << 6) | ((own & 3) << 9))
  out[4] = own | (pred << 13)
  return ((pred & 1) << 1) + (own & 1)


@numba.njit(inline='always', **_JIT)
def _apm(table, s, row, stretched):
  """-> (P(1) * 2^16 interpolated, the index of the nearer point to update)."""
  pr = stretched + 2048
  w = pr & 127
  i = row * 33 + (pr >> 7)
  p = (table[s, i] * (128 - w) + table[s, i + 1] * w) >> 7
  return p, (i if w < 64 else i + 1)


@numba.njit(inline='always', **_JIT)
def _code_symbol(t, s, b, y, x, g, kend, q_model, bit, decoding, rc, data, ctx, slot, inputs):
  """Mixes, codes or decodes, and updates for one symbol. -> (bit, the coded q)."""
  shift = 64 - _log2(t.slots.shape[2])
  gs = t.channel_set[g]
  apm_row = gs * 4 + _contexts(t, b, y, x, g, kend, ctx)
  for i in range(CONTEXTS):
    slot[i] = _hash(i, g, ctx[i], shift)
    inputs[i] = STRETCH[t.slots[s, i, slot[i]] >> 12]  # an unseen slot: P = 1/2, stretch 0
  stretched = STRETCH[q_model >> 4]
  inputs[CONTEXTS] = stretched
  inputs[CONTEXTS + 1] = 256
  dot = 0
  for i in range(INPUTS):
    dot += inputs[i] * t.weights[s, gs, i]
  p = squash(dot >> 16)
  p2, i2 = _apm(t.apm, s, apm_row, STRETCH[p])
  q = min(max((p * 16 + 3 * p2) >> 2, Q_MIN), Q_MAX)
  if decoding:
    bit = binary_rc.decode_bit(rc[s], data, q)
  # updates
  err = ((bit << 12) - p) * LEARNING_RATE
  for i in range(INPUTS):
    w = t.weights[s, gs, i] + ((inputs[i] * err + 2048) >> 12)
    t.weights[s, gs, i] = min(max(w, -WEIGHT_LIMIT), WEIGHT_LIMIT)
  for i in range(CONTEXTS):
    packed = np.int64(t.slots[s, i, slot[i]])
    n, v = packed & 0xFF, packed >> 8
    v += (((bit << 16) - v) * _RATE[n]) >> 16
    t.slots[s, i, slot[i]] = (min(max(v, 32), PROB_ONE - 32) << 8) | min(n + 1, COUNT_LIMIT)
  target = (bit << 16) + (bit << APM_RATE) - bit - bit
  t.apm[s, i2] += (target - t.apm[s, i2]) >> APM_RATE
  t.code[b, y, x, g] = bit
  t.values[b, y, x] = (t.values[b, y, x] << np.uint64(1)) | np.uint64(bit)
  return bit, q


@numba.njit(**_JIT)
def _symbols(t, k, cd, offset, q_in, bits, q_out, decoding, rc, data):
  """Symbols offset .. offset + len(q_in) of layer k in coding order (sample innermost):
  q_in float64 the model's P(1) on the grid; bits int32 in (pass) or out (decoding, from each
  stream's decoder rc[s]); q_out uint16 the coded q (pass only; may be empty)."""
  batch = t.code.shape[0]
  ctx = np.empty(CONTEXTS, np.int64)
  slot = np.empty(CONTEXTS, np.int64)
  inputs = np.empty(INPUTS, np.int64)
  symbol, b = offset // batch, offset % batch   # the sample innermost: no division per symbol
  for j in range(q_in.shape[0]):
    y, x, g = t.where[symbol, 0], t.where[symbol, 1], k * cd + t.where[symbol, 2]
    s = t.stream_of[b]
    q_model = np.int64(q_in[j] * PROB_ONE + 0.5)
    bit, q = _code_symbol(t, s, b, y, x, g, (k + 1) * cd, q_model, bits[j] if not decoding else 0,
                          decoding, rc, data, ctx, slot, inputs)
    if decoding:
      bits[j] = bit
    else:
      q_out[j] = q
    t.cost[s, k] += binary_rc.COST[q if bit else PROB_ONE - q]
    b += 1
    if b == batch:
      b = 0
      symbol += 1


@numba.njit(**_JIT)
def _encode(bits, q, st, out):
  for i in range(bits.shape[0]):
    binary_rc.encode_bit(st, out, q[i], bits[i])


def encode_stream(bits, q):
  """A stream's symbols (bits {0,1}, coded q uint16, in coding order) -> its bytes."""
  bits = np.ascontiguousarray(bits, np.int64)
  st, out = binary_rc.new_encoder(), np.zeros(binary_rc.encoder_capacity(bits.size), np.uint8)
  _encode(bits, np.ascontiguousarray(q, np.int64), st, out)
  return binary_rc.finish(st, out)


_NO_Q = np.zeros(0, np.uint16)


def _where(positions, width, cd):
  pixel, c = np.divmod(positions, cd)
  return np.ascontiguousarray(np.stack([pixel // width, pixel % width, c], axis=1), np.int64)


class Mixer:
  """The mixing stage of one engine batch of B codes [H, W, L*cd] in `streams` streams
  (stream_of[b]: code b's), in the coding order of `sched`."""

  def __init__(self, batch, height, width, layers, cd, causal, sched, stream_of=None):
    stream_of = np.zeros(batch, np.int64) if stream_of is None else np.asarray(stream_of, np.int64)
    streams = int(stream_of.max()) + 1
    depth = layers * cd
    size = 1 << table_bits(height * width * depth * batch // streams)
    sets = min(depth, MAX_CHANNEL_SETS)
    weights = np.zeros((streams, sets, INPUTS), np.int64)
    weights[:, :, CONTEXTS] = WEIGHT_ONE
    self.cd = cd
    self.tables = Tables(
        code=np.zeros((batch, height, width, depth), np.uint8),
        slots=np.full((streams, CONTEXTS, size), (PROB_ONE // 2) << 8, np.uint32),
        values=np.zeros((batch, height, width), np.uint64),
        weights=weights,
        apm=np.tile(_APM_START, (streams, sets * 4)),
        channel_set=np.arange(depth, dtype=np.int64) * sets // depth,
        stream_of=stream_of,
        where=_where(schedule_lib.raster_positions(sched, width, cd, causal), width, cd),
        cost=np.zeros((streams, layers)))
    self._rc = np.zeros((streams, 5), np.int64)
    self._data = np.zeros(0, np.uint8)
    self._ends = None
    # Where the next symbol is: layer, symbol in the layer's coding order. Layers come in order,
    # each whole through pass_layer or in consecutive decode calls (ChunkCoder's call order).
    self._layer, self._offset = 0, 0
    self._layer_symbols = height * width * cd * batch

  def pass_layer(self, k, q, bits):
    """Layer k's symbols, known (the encoder; the decoder's layers coded outside the model):
    q float64 and bits int32 in coding order -> the coded q, uint16, same order."""
    if (k, self._offset) != (self._layer, 0):
      raise AssertionError(f'mixer: layer {k} out of order (next is layer {self._layer})')
    q = np.ascontiguousarray(q.reshape(-1))
    out = np.empty(q.size, np.uint16)
    _symbols(self.tables, k, self.cd, 0, q, np.ascontiguousarray(bits, np.int32), out, False,
             self._rc, self._data)
    self._layer += 1
    return out

  def start_decoding(self, streams):
    """The streams' bytes (one per stream, in stream order) to decode from."""
    self._data = np.frombuffer(b''.join(bytes(s) for s in streams), np.uint8)
    ends = np.cumsum([len(s) for s in streams])
    self._ends = ends
    starts = ends - np.array([len(s) for s in streams])
    for s, (start, end) in enumerate(zip(starts, ends)):
      if end > start:
        _init(self._rc[s], self._data, start, end)

  def decode(self, q):
    """ChunkCoder.decode's decode_bits: the next symbols of the layer being decoded, given the
    model's q (float64, coding order) -> int32 bits."""
    bits = np.empty(q.size, np.int32)
    _symbols(self.tables, self._layer, self.cd, self._offset, q, bits, _NO_Q, True, self._rc,
             self._data)
    self._offset += q.size
    if self._offset == self._layer_symbols:
      self._layer, self._offset = self._layer + 1, 0
    return bits

  def used_exactly(self, s):
    """Whether stream s decoded into exactly its own bytes."""
    return binary_rc.used_exactly(self._rc[s], int(self._ends[s]))

  def layer_cost(self, s, k):
    """Stream s's coded cost of layer k in bits (-log2 of each coded probability)."""
    return float(self.tables.cost[s, k])


@numba.njit(**_JIT)
def _init(st, data, start, end):
  binary_rc.decoder_init(st, data, start, end)
