"""Incremental probabilities of the progressive model: one pixel at a time, many samples at once.

The decoder learns the bits of pixel (y, x) only after it has decoded them, so it must evaluate
the model pixel by pixel. Re-evaluating the layer on the partial code at every pixel (naive.py)
costs O(H^2 W) per pixel; here every pixel adds only what it changes:

    per layer k, once:   s_k (from the finished layer k-1) -> a1 = T(conv3x3(s_k))
    per row y, once:     zrow[x] = bias + input_conv taps on a1[y, x-1], a1[y, x]
                                  + hidden_conv on the finished row y-1 (h[y-1, x-1..x+1])
    per pixel (y, x):    a0 = T(masked 7x7 window of earlier bits)             (24 taps)
                         z  = zrow[x] + input_conv taps on a0[y, x-1], a0[y, x]
                         (h, c) = LSTM gates(z, c[y-1, x]);  t0 = out1x1_a(h)
                         P(bit ch = 1) from T(out1x1_b(T(t0 [+ channel_ar on bits j < ch])))

THE ENCODER AND THE DECODER MAKE THE SAME CALLS (`ChunkCoder`): the same sequence of
`pixel_step` / `channel_head`, each writing the previous step's bits into the code and then
reading only bits written before. The decoder gets those bits from the range decoder between
calls (a Python loop); the encoder feeds the known bits (the same loop in numba,
`code_known_layer`, which saves the per-call overhead). Nothing depends on the batch size or the
thread count: arrays are laid out [..., sample] and every loop runs over samples innermost, so
each sample's arithmetic is the same float32 sequence (fixed summation order, deterministic
exp/tanh from arith.py, no fastmath) whether it runs alone, in a SIMD lane or in a batch of 128.
Probabilities are rounded to a 1/2^16 grid (`_quantize`) before they reach the range coder.

Every stage is one of a few inlined helpers: `_dense_tanh` / `_conv_tanh` (fill with the bias,
accumulate weight x input over the inputs in order, tanh), `_row_taps` (the row LSTM's 1 x n
convs) and `_lstm_cell` (both LSTMs). Each output's sum is built in one fixed order (taps in
order, then input channels in order), so the float32 results, and the bytes, never depend on
how a loop is written around them. The model's facts (live taps, gate order, clip, widths) are
trainer/spec.py's; pixel_step and next_state take theirs as documented bundles
(`PixelWeights`, `StateWeights`, with `Buffers`).
"""
import dataclasses
import typing

import numba
import numpy as np

from entropy_coder.codec.arith import JIT_OPTIONS as _JIT
from entropy_coder.codec.arith import F32, HALF, ONE, ZERO, sigmoid_, tanh_
from entropy_coder.trainer import spec

# Probabilities reach the range coder as q / 2^16 with q an integer in [1, 2^16 - 1].
PROB_BITS = 16
_PROB_SCALE = F32(1 << PROB_BITS)
_PROB_SCALE_F64 = float(1 << PROB_BITS)
_CLIP = F32(spec.PRED_CLIP)
# Taps as (dy, dx) offset arrays, which numba reads as constants: adaptation0's live 7x7 taps
# (w7's order), all nine taps of a 3x3 conv (raster order), the live taps of the row LSTM's input
# conv (win's order; one row: dy = 0) and its hidden conv on the row above (x-1, x, x+1).
_DY7, _DX7 = (np.array(offsets, np.int64) for offsets in zip(*spec.TAPS_7X7))
_DY3, _DX3 = (np.array(offsets, np.int64) for offsets in zip(*spec.live_taps(np.ones((3, 3)))))
assert all(dy == 0 for dy, _ in spec.ROW_INPUT_TAPS), 'the row LSTM input conv reads one row'
_INPUT_DX = np.array([dx for _, dx in spec.ROW_INPUT_TAPS], np.int64)
_HIDDEN_DX = np.array([dx for _, dx in spec.live_taps(np.ones((1, 3)))], np.int64)
# Where each gate's h rows start in the 4h pre-activation rows, in units of h (spec.GATES).
_F, _I, _J, _O = (spec.GATES.index(gate) for gate in ('f', 'i', 'j', 'o'))


class PixelWeights(typing.NamedTuple):
  """The weights `pixel_step` reads: layer k's predictor but for the state's conv (layer_a1)
  and channel_ar (channel_head). float32, stacked over layers (leading axis = layer k;
  cd = layer_depth, h = spec.hidden_depth(cd)), kernels as lists of taps [L, taps, in, out].

  pixel_step takes it as a plain tuple (`of` builds one) and unpacks it in this field order:
  numba types a plain tuple of arrays in C but a namedtuple in Python (about 1 us a call, some
  4% of a decoder step), and every array passed costs the decoder's Python loop time too.
  """
  w7: np.ndarray   # [L, 24, cd, h]  brnn/adaptation0_masked7x7 kernel, live taps (_DY7, _DX7)
  b7: np.ndarray   # [L, h]          its bias
  win: np.ndarray  # [L, 2, 2h, 4h]  brnn/row_lstm/input_conv on a = (a0 | a1), taps _INPUT_DX
  wh: np.ndarray   # [L, 3, h, 4h]   brnn/row_lstm/hidden_conv on h of the row above, _HIDDEN_DX
  bl: np.ndarray   # [L, 4h]         brnn/row_lstm/bias (gates in spec.GATES order)
  wa: np.ndarray   # [L, h, h]       brnn/out1x1_a kernel
  ba: np.ndarray   # [L, h]          its bias
  wb: np.ndarray   # [L, h, cd]      brnn/out1x1_b kernel
  bb: np.ndarray   # [L, cd]         its bias

  @classmethod
  def of(cls, net):
    """-> the plain tuple of a float32 Network's pixel-step weights."""
    return tuple(cls(**{name: getattr(net, name) for name in cls._fields}))


class StateWeights(typing.NamedTuple):
  """The weights `next_state` reads (as `PixelWeights`: float32, a plain tuple, this order)."""
  sa: np.ndarray   # [L, 9, cd, h]   state_block/conv3x3_a kernel (taps _DY3, _DX3)
  sab: np.ndarray  # [L, h]          its bias
  sb: np.ndarray   # [L, 9, h, cd]   state_block/conv3x3_b kernel
  sbb: np.ndarray  # [L, cd]         its bias
  rin: np.ndarray  # [cd, 4h]        layer_rnn/lstm/input_conv (1x1)
  rh: np.ndarray   # [h, 4h]         layer_rnn/lstm/hidden_conv (1x1)
  rb: np.ndarray   # [4h]            layer_rnn/lstm/bias
  ra: np.ndarray   # [h, h]          layer_rnn/out1x1_a kernel
  rab: np.ndarray  # [h]             its bias
  rbw: np.ndarray  # [h, cd]         layer_rnn/out1x1_b kernel
  rbb: np.ndarray  # [cd]            its bias

  @classmethod
  def of(cls, net):
    """-> the plain tuple of a float32 Network's state weights."""
    return tuple(cls(sa=taps3x3(net.sa), sab=net.sab, sb=taps3x3(net.sb), sbb=net.sbb,
                     rin=net.rin, rh=net.rh, rb=net.rb, ra=net.ra, rab=net.rab, rbw=net.rbw,
                     rbb=net.rbb))


class Buffers(typing.NamedTuple):
  """The running state of one layer of a chunk (float32; passed as a plain tuple, this order)."""
  a1: np.ndarray     # [H, W, h, B]   T(conv3x3(s_k)), the state's half of the row LSTM input
  zrow: np.ndarray   # [W, 4h, B]     the row's part of the row LSTM pre-activations (_row_start)
  a0row: np.ndarray  # [W, h, B]      a0 of the current row
  hbuf: np.ndarray   # [2, W, h, B]   row LSTM h of rows y (y % 2) and y - 1
  cbuf: np.ndarray   # [2, W, h, B]   row LSTM c, the same
  t0buf: np.ndarray  # [h, B]         out1x1_a's pre-activation at the current pixel

  @classmethod
  def new(cls, height, width, hd, batch):
    f32 = np.float32
    gates = len(spec.GATES) * hd
    return tuple(cls(a1=np.empty((height, width, hd, batch), f32),
                     zrow=np.empty((width, gates, batch), f32),
                     a0row=np.empty((width, hd, batch), f32),
                     hbuf=np.zeros((2, width, hd, batch), f32),
                     cbuf=np.zeros((2, width, hd, batch), f32),
                     t0buf=np.empty((hd, batch), f32)))


def taps3x3(kernels):
  """[L, 3, 3, cin, cout] -> [L, 9, cin, cout], taps in raster order (_DY3, _DX3)."""
  return np.ascontiguousarray(kernels.reshape((kernels.shape[0], 9) + kernels.shape[3:]))


# ---- the arithmetic: each helper is inlined where it is called ---------------------------------


@numba.njit(inline='always', **_JIT)
def _quantize(pred, out_p, out_q):
  """pred row in (-1, 1) -> P(1) as the model says (out_p) and on the coder's grid (out_q).

  In float32 p * 2^16 + 0.5 is exact (p < 1 has 24 significant bits), so q is exactly
  round(p * 2^16); both outputs are float64 for numpy and constriction.
  """
  for b in range(pred.shape[0]):
    v = pred[b]
    v = v if v < _CLIP else _CLIP
    v = v if v > -_CLIP else -_CLIP
    p = (v + ONE) * HALF
    q = np.floor(p * _PROB_SCALE + HALF)
    q = q if q > ONE else ONE
    q = q if q < _PROB_SCALE - ONE else _PROB_SCALE - ONE
    out_p[b] = p
    out_q[b] = np.float64(q) / _PROB_SCALE_F64


@numba.njit(inline='always', **_JIT)
def _set(acc, values):
  """acc [n, B] = values [n, B]."""
  for o in range(acc.shape[0]):
    for b in range(acc.shape[1]):
      acc[o, b] = values[o, b]


@numba.njit(inline='always', **_JIT)
def _set_bias(acc, bias):
  """acc [n, B] = bias [n], for every sample."""
  for o in range(acc.shape[0]):
    for b in range(acc.shape[1]):
      acc[o, b] = bias[o]


@numba.njit(inline='always', **_JIT)
def _accumulate(acc, src, w):
  """acc [n, B] += src [m, B] times w [m, n], adding the m inputs in order i = 0, 1, ...: the
  summation order of every output of the engine (which loop nest runs it does not matter)."""
  for i in range(w.shape[0]):
    row = src[i]
    for o in range(w.shape[1]):
      wv = w[i, o]
      for b in range(acc.shape[1]):
        acc[o, b] += row[b] * wv


@numba.njit(inline='always', **_JIT)
def _tanh_rows(acc):
  for o in range(acc.shape[0]):
    tanh_(acc[o])


@numba.njit(inline='always', **_JIT)
def _dense_tanh(acc, bias, src, w):
  """acc [n, B] = T(bias + src [m, B] times w [m, n]): a 1x1 conv and its tanh."""
  _set_bias(acc, bias)
  _accumulate(acc, src, w)
  _tanh_rows(acc)


@numba.njit(inline='always', **_JIT)
def _conv_tanh(acc, bias, img, c0, y, x, height, dys, dxs, w):
  """acc [n, B] = T(bias + a conv at pixel (y, x)): tap t adds channels c0 .. c0+m-1 of img
  [rows, W, C, B] at (y + dys[t], x + dxs[t]) times w[t] [m, n], taps in order; taps outside
  the `height` x W image add nothing (zero padding). Image row r is img row r % rows, so img
  may hold only the last rows of the image (a ring buffer)."""
  rows, width = img.shape[0], img.shape[1]
  m = w.shape[1]
  _set_bias(acc, bias)
  for t in range(dys.shape[0]):
    yy = y + dys[t]
    xx = x + dxs[t]
    if yy < 0 or yy >= height or xx < 0 or xx >= width:
      continue
    _accumulate(acc, img[yy if yy < rows else yy % rows, xx, c0:c0 + m], w[t])
  _tanh_rows(acc)


@numba.njit(inline='always', **_JIT)
def _row_taps(acc, row, x, dxs, w):
  """acc [n, B] += a one-row conv at column x: w[t] [m, n] times row[x + dxs[t]] [m, B], taps
  in order, nothing beyond the row's ends."""
  for t in range(dxs.shape[0]):
    xx = x + dxs[t]
    if 0 <= xx < row.shape[0]:
      _accumulate(acc, row[xx], w[t])


@numba.njit(inline='always', **_JIT)
def _lstm_cell(z, c_prev, has_prev, c, h):
  """spec.lstm_cell on rows of samples: z [4h, B] holds the pre-activations, gates in
  spec.GATES order (overwritten with their activations); c_prev [h, B] the previous cell state
  (read as 0 unless has_prev; may be c itself) -> c, h [h, B]."""
  hd = c.shape[0]
  for o in range(hd):
    forget, inp, cand, out = z[_F * hd + o], z[_I * hd + o], z[_J * hd + o], z[_O * hd + o]
    sigmoid_(forget)
    sigmoid_(inp)
    tanh_(cand)
    sigmoid_(out)
    for b in range(c.shape[1]):
      c[o, b] = forget[b] * (c_prev[o, b] if has_prev else ZERO) + inp[b] * cand[b]
      h[o, b] = c[o, b]
    tanh_(h[o])
    for b in range(h.shape[1]):
      h[o, b] *= out[b]


@numba.njit(inline='always', **_JIT)
def _put_bits(xs, channel0, y, x, bits):
  """Writes a pixel's decoded bits (layout [channel][sample]) as +-1 into xs [H, W, D, B] (int8;
  0 = not decoded yet). int8 keeps the 7x7 window of a batch in the fast caches."""
  batch = xs.shape[3]
  for i in range(bits.shape[0] // batch):
    for b in range(batch):
      xs[y, x, channel0 + i, b] = 2 * bits[i * batch + b] - 1


# ---- the kernels ------------------------------------------------------------------------------


@numba.njit(**_JIT)
def put_bits(xs, channel0, y, x, bits):
  _put_bits(xs, channel0, y, x, bits)


@numba.njit(**_JIT)
def layer_a1(s, w3, b3, k, a1):
  """a1 = T(conv3x3(s_k) + b) [H, W, h, B]: the state's half of the row LSTM input.
  w3 [L, 9, cd, h], b3 [L, h]: brnn/adaptation1_conv3x3, kernel as `taps3x3`."""
  height, width = s.shape[0], s.shape[1]
  for y in range(height):
    for x in range(width):
      _conv_tanh(a1[y, x], b3[k], s, 0, y, x, height, _DY3, _DX3, w3[k])


@numba.njit(inline='always', **_JIT)
def _row_start(y, a1, wink, whk, blk, hbuf, zrow):
  """zrow[x] = bias + input_conv taps on a1 of row y + hidden_conv taps on h of row y-1, for
  the whole row y (a1 is the second half of the input conv's channels: a = (a0 | a1))."""
  hd = a1.shape[2]
  for x in range(a1.shape[1]):
    z = zrow[x]
    _set_bias(z, blk)
    _row_taps(z, a1[y], x, _INPUT_DX, wink[:, hd:])
    if y > 0:
      _row_taps(z, hbuf[(y + 1) % 2], x, _HIDDEN_DX, whk)


@numba.njit(**_JIT)
def pixel_step(xs, k, y, x, put_bits_, put_y, put_x, put_c0, weights, buffers, heads, out_p,
               out_q, slot):
  """Advances the row LSTM of layer k to pixel (y, x) for every sample of the batch.

  First writes the previous step's decoded bits; at x == 0 precomputes the row's part of the
  row LSTM input (`_row_start`). Leaves t0 (out1x1_a's pre-activation) in buffers.t0buf and, if
  `heads`, the probabilities of the pixel's cd channels in out_p / out_q[slot].

  Args:
    xs: int8 [H, W, L*cd, B], the code as +-1, 0 where not decoded yet; layer k is channels
      k*cd .. k*cd + cd - 1 (spec.layer_channels).
    k, y, x: the layer and the pixel.
    put_bits_: int32 [n*B], the previous step's bits, layout [channel][sample] (n channels).
    put_y, put_x, put_c0: where they go: pixel (put_y, put_x), channels k*cd + put_c0 ..;
      put_y < 0: nothing to write (the layer's first pixel).
    weights: `PixelWeights.of(net)`.
    buffers: `Buffers.new(...)` of the chunk, carried from pixel to pixel.
    heads: also compute the probabilities (False in channel-causal mode: `channel_head` does).
    out_p, out_q: float64 [H*W, cd*B], unquantised and quantised P(1) per pixel, layout
      [channel][sample].
    slot: this pixel's row of out_p / out_q (y*W + x).
  """
  w7, b7, win, wh, bl, wa, ba, wb, bb = weights
  a1, zrow, a0row, hbuf, cbuf, t0buf = buffers
  height, batch = xs.shape[0], xs.shape[3]
  cd, hd = w7.shape[2], w7.shape[3]
  base = k * cd
  cur, prev = y % 2, (y + 1) % 2
  z = np.empty((zrow.shape[1], batch), dtype=np.float32)
  if put_y >= 0:
    _put_bits(xs, base + put_c0, put_y, put_x, put_bits_)
  if x == 0:
    _row_start(y, a1, win[k], wh[k], bl[k], hbuf, zrow)
  # a0 = T(masked 7x7 over the bits before (y, x)): its live taps only.
  _conv_tanh(a0row[x], b7[k], xs, base, y, x, height, _DY7, _DX7, w7[k])
  # The row LSTM: the row's precomputed input plus the a0 taps (first half of a = (a0 | a1)).
  _set(z, zrow[x])
  _row_taps(z, a0row, x, _INPUT_DX, win[k][:, :hd])
  _lstm_cell(z, cbuf[prev, x], y > 0, cbuf[cur, x], hbuf[cur, x])
  _set_bias(t0buf, ba[k])
  _accumulate(t0buf, hbuf[cur, x], wa[k])
  if heads:
    t = z[:hd]  # z is free again: scratch
    _set(t, t0buf)
    _tanh_rows(t)
    pre = z[hd:hd + cd]
    _dense_tanh(pre, bb[k], t, wb[k])
    for ch in range(cd):
      _quantize(pre[ch], out_p[slot, ch * batch:(ch + 1) * batch],
                out_q[slot, ch * batch:(ch + 1) * batch])


@numba.njit(**_JIT)
def channel_head(xs, k, y, x, ch, put_bits_, wb, bb, car, t0buf, out_p, out_q, slot):
  """Channel-causal head: P(bit ch of pixel (y, x)) from t0 and that pixel's bits j < ch.

  First writes the bits of channel ch-1 (decoded after the previous call) unless ch == 0.
  wb, bb as in `PixelWeights`; car [L, cd, cd, h] brnn/channel_ar ([j, c] used for j < c);
  the other arguments as `pixel_step`'s.
  """
  batch = xs.shape[3]
  cd, hd = car.shape[1], t0buf.shape[0]
  base = k * cd
  if ch > 0:
    _put_bits(xs, base + ch - 1, y, x, put_bits_)
  t = np.empty((hd, batch), dtype=np.float32)
  pre = np.empty((1, batch), dtype=np.float32)
  _set(t, t0buf)
  _accumulate(t, xs[y, x, base:base + ch], car[k, :ch, ch])
  _tanh_rows(t)
  _dense_tanh(pre, bb[k, ch:ch + 1], t, wb[k, :, ch:ch + 1])
  _quantize(pre[0], out_p[slot, ch * batch:(ch + 1) * batch],
            out_q[slot, ch * batch:(ch + 1) * batch])


@numba.njit(inline='always', **_JIT)
def _state_u_row(xs, base, y, sak, sabk, ring):
  """ring[y % 3] [W, h, B] = T(state_block conv3x3_a(x_k) + b) for row y."""
  height = xs.shape[0]
  for x in range(xs.shape[1]):
    _conv_tanh(ring[y % 3, x], sabk, xs, base, y, x, height, _DY3, _DX3, sak)


@numba.njit(**_JIT)
def next_state(xs, k, state_weights, rnn_h, rnn_c, s):
  """s_{k+1} [H, W, cd, B] from the finished layer k; updates layer_rnn (h, c) in place.

  `state_weights`: `StateWeights.of(net)`. The state block's first conv is kept for three rows
  only (a ring buffer), so its output stays in the caches while the second conv reads it.
  """
  sa, sab, sb, sbb, rin, rh, rb, ra, rab, rbw, rbb = state_weights
  height, width, _, batch = xs.shape
  cd, hd = sa.shape[2], sa.shape[3]
  base = k * cd
  ring = np.empty((3, width, hd, batch), dtype=np.float32)
  v = np.empty((cd, batch), dtype=np.float32)
  z = np.empty((rb.shape[0], batch), dtype=np.float32)
  t = np.empty((hd, batch), dtype=np.float32)
  _state_u_row(xs, base, 0, sa[k], sab[k], ring)
  for y in range(height):
    if y + 1 < height:
      _state_u_row(xs, base, y + 1, sa[k], sab[k], ring)
    for x in range(width):
      _conv_tanh(v, sbb[k], ring, 0, y, x, height, _DY3, _DX3, sb[k])
      hr, cr = rnn_h[y, x], rnn_c[y, x]
      _set_bias(z, rb)
      _accumulate(z, v, rin)
      _accumulate(z, hr, rh)
      _lstm_cell(z, cr, True, cr, hr)
      _dense_tanh(t, rab, hr, ra)
      _dense_tanh(s[y, x], rbb, t, rbw)


@numba.njit(**_JIT)
def code_known_layer(xs, k, layer_bits, weights, wb, bb, car, causal, buffers, out_p, out_q):
  """The encoder's pixel loop of layer k, run inside numba: the decoder's exact sequence of
  `pixel_step` / `channel_head` calls, fed with the known bits (layer_bits [H, W, cd, B] int32)
  instead of decoded ones. Fills out_p / out_q[y * W + x] for every pixel."""
  height, width, cd, batch = layer_bits.shape
  t0buf = buffers[5]
  put = layer_bits[0, 0].reshape(cd * batch)[:0]
  put_y, put_x, put_c0 = -1, 0, 0
  for y in range(height):
    for x in range(width):
      slot = y * width + x
      pixel_step(xs, k, y, x, put, put_y, put_x, put_c0, weights, buffers, not causal, out_p,
                 out_q, slot)
      if causal:
        for ch in range(cd):
          channel_head(xs, k, y, x, ch, layer_bits[y, x, ch - 1] if ch else put[:0], wb, bb, car,
                       t0buf, out_p, out_q, slot)
        put, put_c0 = layer_bits[y, x, cd - 1], cd - 1
      else:
        put = layer_bits[y, x].reshape(cd * batch)
      put_y, put_x = y, x
  if put_y >= 0:
    _put_bits(xs, k * cd + put_c0, put_y, put_x, put)


class ChunkCoder:
  """Runs the model over one batch of B equal-shape codes, pixel by pixel, layer by layer.

  Both directions make the same sequence of `pixel_step` (and, channel-causal, `channel_head`)
  calls, each reading only bits written by earlier steps:
  * `decode(decode_bits)`: a Python loop; for every coding step (a pixel, or one channel of a
    pixel in channel-causal mode) `decode_bits(probs)` gets the quantised P(1) of that step
    (float64, layout [channel][sample]) and returns the decoded int32 bits in the same layout,
    which the next step writes into the code before it reads anything;
  * `encode(codes)`: the same loop inside numba (`code_known_layer`), fed with the known bits.
  `layer_done(k, p_model, p_coded, bits)` sees each finished layer's unquantised and quantised
  probabilities, [H*W, cd, B] in coding order, and its bits (int32, flat, the same order).
  Both return the codes, uint8 [B, H, W, L*cd].
  """

  def __init__(self, net, batch, height, width, layers):
    self.net = float32_network(net)
    self.weights = PixelWeights.of(self.net)
    self.w3 = taps3x3(self.net.w3s)
    self.state_weights = StateWeights.of(self.net)
    self.shape = (batch, height, width)
    self.layers = layers

  def _code_known(self, k, layer_codes, xs, buffers, out_p, out_q):
    """Feeds layer k's known bits (uint8 [B, H, W, cd]) through the pixel loop."""
    net = self.net
    layer_bits = np.ascontiguousarray(layer_codes.transpose(1, 2, 3, 0), dtype=np.int32)
    code_known_layer(xs, k, layer_bits, self.weights, net.wb, net.bb, net.car, net.channel_causal,
                     buffers, out_p, out_q)

  def encode(self, codes, layer_done):
    cd = self.net.layer_depth

    def code_layer(k, xs, buffers, out_p, out_q):
      self._code_known(k, codes[..., spec.layer_channels(k, cd)], xs, buffers, out_p, out_q)

    return self._run(code_layer, layer_done)

  def decode(self, decode_bits, layer_done, row_done=None, known=None):
    """decode_bits(probs) -> int32 bits of one step; row_done(k, y) after each row (progress).

    known: {k: uint8 [B, H, W, cd]}, layers whose bits the caller already has (coded outside
    the model's stream): they are fed as the encoder feeds them, with no decode_bits call, and
    layer_done still sees the model's probabilities for them."""
    known = known or {}
    batch, height, width = self.shape
    cd = self.net.layer_depth
    causal = self.net.channel_causal
    heads = not causal
    weights, wb, bb, car = self.weights, self.net.wb, self.net.bb, self.net.car

    def code_layer(k, xs, buffers, out_p, out_q):
      if k in known:
        self._code_known(k, known[k], xs, buffers, out_p, out_q)
        if row_done is not None:
          for y in range(height):
            row_done(k, y)
        return
      # This loop runs H*W times per layer for the whole batch: kept lean on purpose.
      t0buf = buffers[5]
      bits, put_y, put_x, put_c0 = _NO_BITS, -1, 0, 0
      slot = 0
      for y in range(height):
        for x in range(width):
          pixel_step(xs, k, y, x, bits, put_y, put_x, put_c0, weights, buffers, heads, out_p,
                     out_q, slot)
          if causal:
            bits = _NO_BITS
            for ch in range(cd):
              channel_head(xs, k, y, x, ch, bits, wb, bb, car, t0buf, out_p, out_q, slot)
              bits = decode_bits(out_q[slot, ch * batch:(ch + 1) * batch])
            put_c0 = cd - 1
          else:
            bits = decode_bits(out_q[slot])
          put_y, put_x = y, x
          slot += 1
        if row_done is not None:
          row_done(k, y)
      put_bits(xs, k * cd + put_c0, put_y, put_x, bits)  # the layer's last pixel

    return self._run(code_layer, layer_done)

  def _run(self, code_layer, layer_done):
    batch, height, width = self.shape
    cd, hd = self.net.layer_depth, self.net.hidden_depth
    xs = np.zeros((height, width, self.layers * cd, batch), dtype=np.int8)
    s = np.zeros((height, width, cd, batch), np.float32)
    rnn_h = np.zeros((height, width, hd, batch), np.float32)
    rnn_c = np.zeros_like(rnn_h)
    buffers = Buffers.new(height, width, hd, batch)
    out_p = np.empty((height * width, cd * batch))  # per pixel: [channel][sample]
    out_q = np.empty((height * width, cd * batch))
    for k in range(self.layers):
      layer_a1(s, self.w3, self.net.b3s, k, buffers[0])
      code_layer(k, xs, buffers, out_p, out_q)
      bits = (xs[:, :, spec.layer_channels(k, cd)] > 0).astype(np.int32).reshape(-1)
      layer_done(k, out_p, out_q, bits)
      if k + 1 < self.layers:
        next_state(xs, k, self.state_weights, rnn_h, rnn_c, s)
    return np.ascontiguousarray((xs > 0).astype(np.uint8).transpose(3, 0, 1, 2))


_NO_BITS = np.zeros(0, dtype=np.int32)


def float32_network(net):
  """The Network with every weight array in float32, the engine's precision (exact: the
  weights are float32 to begin with)."""
  arrays = {field.name: getattr(net, field.name).astype(np.float32)
            for field in dataclasses.fields(net) if isinstance(getattr(net, field.name), np.ndarray)}
  return dataclasses.replace(net, **arrays)


def engine_probabilities(net, codes):
  """The engine's P(bit = 1) for complete codes uint8 [B, H, W, D] -> (model, coded) float64
  [B, H, W, D]: exactly what the encoder computes (tests, diagnostics)."""
  codes = np.asarray(codes, dtype=np.uint8)
  batch, height, width, depth = codes.shape
  cd = net.layer_depth
  layers = net.layers_of(depth, '<codes>')
  p_model = np.empty((batch, height, width, depth))
  p_coded = np.empty_like(p_model)

  def layer_done(k, out_p, out_q, _):
    for target, source in ((p_model, out_p), (p_coded, out_q)):
      target[..., spec.layer_channels(k, cd)] = source.reshape(height, width, cd, batch).transpose(
          3, 0, 1, 2)

  ChunkCoder(net, batch, height, width, layers).encode(codes, layer_done)
  return p_model, p_coded
