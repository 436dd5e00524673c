"""Incremental probabilities of the progressive model: a step of pixels at a time, many samples at once.

The decoder learns the bits of pixel (y, x) only after it has decoded them, so it must evaluate
the model step by step. Re-evaluating the layer on the partial code at every pixel (naive.py)
costs O(H^2 W) per pixel; here every pixel adds only what it changes:

    per layer k, once:   s_k (from the finished layer k-1) -> a1 = T(conv3x3(s_k))
    per pixel (y, x):    a0 = T(masked 7x7 window of earlier bits)             (24 taps)
                         z  = bias + input_conv taps on a1[y, x-1..x]
                                   + hidden_conv taps on h[y-1, x-1..x+1]
                                   + input_conv taps on a0[y, x-1..x]
                         (h, c) = LSTM gates(z, c[y-1, x]);  t0 = out1x1_a(h)
                         P(bit ch = 1) from T(out1x1_b(T(t0 [+ channel_ar on bits j < ch])))

Which pixels a step codes is the schedule (codec/schedule.py, named by the file's coder id):
coder 1 one pixel per step in raster order, coder 2 a wavefront x + 4y = t of pixels that do not
depend on each other. A pixel reads only pixels of earlier steps, so its arithmetic is the same
whichever schedule runs it.

THE ENCODER AND THE DECODER MAKE THE SAME CALLS (`ChunkCoder`): the same sequence of
`wave_step` / `wave_channel`, each writing the previous step's bits into the code and then
reading only bits written before. The decoder gets those bits from the range decoder between
calls (a Python loop); the encoder feeds the known bits (the same loop in numba,
`code_known_layer`, which saves the per-call overhead). Nothing depends on the batch size or the
thread count: every loop runs over lanes innermost, and a lane is a sample (B >= LANES samples)
or a (pixel, sample) pair (fewer samples: a step's pixels, or a row's for the state, are
gathered into the lanes, `_gather`), so each pixel's arithmetic is the same float32 sequence
(fixed summation order, deterministic exp/tanh from arith.py, no fastmath) whether it runs
alone, in a SIMD lane or in a batch of 128. Probabilities are rounded to a 1/2^16 grid
(`_quantize`) before they reach the range coder.

Every stage is one of a few inlined helpers: `_dense_tanh` / `_conv_tanh` (fill with the bias,
accumulate weight x input over the inputs in order, tanh), `_row_taps` (the row LSTM's 1 x n
convs) and `_lstm_cell` (both LSTMs). Each output's sum is built in one fixed order (taps in
order, then input channels in order), so the float32 results, and the bytes, never depend on
how a loop is written around them (a gathered tap outside the image adds 0 * w where the
per-pixel path adds nothing: at most the sign of a zero differs, never a probability). The
model's facts (live taps, gate order, clip, widths) are trainer/spec.py's; wave_step and
next_state take theirs as documented bundles (`PixelWeights`, `StateWeights`, with `Buffers`).
"""
import dataclasses
import typing

import numba
import numpy as np

from entropy_coder.codec.arith import JIT_OPTIONS as _JIT
from entropy_coder.codec.arith import F32, HALF, ONE, ZERO, sigmoid_, tanh_
from entropy_coder.codec import bitstream, schedule
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


# Where a0 and a1 sit in the row LSTM's input a (spec.ROW_INPUT_PARTS): the index of each part's
# slice of the input conv's kernel.
A0 = spec.ROW_INPUT_PARTS.index('adaptation0')
A1 = spec.ROW_INPUT_PARTS.index('adaptation1')


class PixelWeights(typing.NamedTuple):
  """The weights `wave_step` reads: layer k's predictor but for the state's conv (layer_a1)
  and channel_ar (wave_channel). float32, stacked over layers (leading axis = layer k;
  cd = layer_depth, h = spec.hidden_depth(cd)), kernels as lists of taps [L, taps, in, out].

  wave_step takes it as a plain tuple (`of` builds one) and unpacks it in this field order:
  numba types a plain tuple of arrays in C but a namedtuple in Python (about 1 us a call, some
  4% of a decoder step), and every array passed costs the decoder's Python loop time too.
  """
  w7: np.ndarray   # [L, 24, cd, h]  brnn/adaptation0_masked7x7 kernel, live taps (_DY7, _DX7)
  b7: np.ndarray   # [L, h]          its bias
  win: np.ndarray  # [L, 2, 2, h, 4h] brnn/row_lstm/input_conv: [k, A0] on a0, [k, A1] on a1
                   #                 (a = (a0 | a1)), each [taps _INPUT_DX, h, 4h]
  wh: np.ndarray   # [L, 3, h, 4h]   brnn/row_lstm/hidden_conv on h of the row above, _HIDDEN_DX
  bl: np.ndarray   # [L, 4h]         brnn/row_lstm/bias (gates in spec.GATES order)
  wa: np.ndarray   # [L, h, h]       brnn/out1x1_a kernel
  ba: np.ndarray   # [L, h]          its bias
  wb: np.ndarray   # [L, h, cd]      brnn/out1x1_b kernel
  bb: np.ndarray   # [L, cd]         its bias

  @classmethod
  def of(cls, net):
    """-> the plain tuple of a float32 Network's pixel-step weights."""
    fields = {name: getattr(net, name) for name in cls._fields}
    layers, taps, channels, gates = net.win.shape
    parts = len(spec.ROW_INPUT_PARTS)  # a = the parts, in that order, along the channels
    fields['win'] = np.ascontiguousarray(net.win.reshape(
        layers, taps, parts, channels // parts, gates).transpose(0, 2, 1, 3, 4))
    return tuple(cls(**fields))


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
  """The running state of one layer of a chunk (float32; passed as a plain tuple, this order).
  Every pixel keeps its own a0, h and c, since a step may code a pixel of every row."""
  a1: np.ndarray     # [H, W, h, B]   T(conv3x3(s_k)), the state's half of the row LSTM input
  a0: np.ndarray     # [H, W, h, B]   T(masked 7x7 on the layer's bits), the other half
  hbuf: np.ndarray   # [H, W, h, B]   row LSTM h
  cbuf: np.ndarray   # [H, W, h, B]   row LSTM c
  t0buf: np.ndarray  # [P, h, B]      out1x1_a's pre-activation at the step's P pixels

  @classmethod
  def new(cls, height, width, hd, batch, widest):
    f32 = np.float32
    return tuple(cls(a1=np.empty((height, width, hd, batch), f32),
                     a0=np.empty((height, width, hd, batch), f32),
                     hbuf=np.empty((height, width, hd, batch), f32),
                     cbuf=np.empty((height, width, hd, batch), f32),
                     t0buf=np.empty((widest, hd, batch), f32)))


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
  inputs, outputs, lanes = w.shape[0], w.shape[1], acc.shape[1]
  # Four inputs per pass over acc (one load and store of acc per four products): the adds stay
  # in input order, ((acc + r0 w0) + r1 w1) + ..., the same IEEE operations as one at a time.
  full = inputs - inputs % 4
  for i in range(0, full, 4):
    r0, r1, r2, r3 = src[i], src[i + 1], src[i + 2], src[i + 3]
    for o in range(outputs):
      w0, w1, w2, w3 = w[i, o], w[i + 1, o], w[i + 2, o], w[i + 3, o]
      for b in range(lanes):
        acc[o, b] = (((acc[o, b] + r0[b] * w0) + r1[b] * w1) + r2[b] * w2) + r3[b] * w3
  for i in range(full, inputs):
    row = src[i]
    for o in range(outputs):
      wv = w[i, o]
      for b in range(lanes):
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
def _put_bits(xs, channel0, channels, pixels, lo, hi, bits):
  """Writes decoded bits as +-1 into xs [H, W, D, B] (int8; 0 = not decoded yet): `channels`
  channels from channel0 of pixels[lo:hi], bits laid out [pixel][channel][sample]. int8 keeps
  the 7x7 window of a batch in the fast caches."""
  batch = xs.shape[3]
  for p in range(hi - lo):
    y, x = pixels[lo + p, 0], pixels[lo + p, 1]
    for i in range(channels):
      for b in range(batch):
        xs[y, x, channel0 + i, b] = 2 * bits[(p * channels + i) * batch + b] - 1


# ---- the kernels ------------------------------------------------------------------------------


@numba.njit(**_JIT)
def put_bits(xs, channel0, channels, pixels, lo, hi, bits):
  _put_bits(xs, channel0, channels, pixels, lo, hi, bits)


@numba.njit(**_JIT)
def coding_order_bits(src, channel0, channels, pixels, starts, causal, out):
  """out int32 [H*W*channels*B] = (src > 0) of channels channel0 .. of src [H, W, C, B], in
  coding order (codec/schedule.py): per step pixel, channel, sample; channel-causal: channel,
  pixel, sample."""
  batch = src.shape[3]
  for i in range(starts.shape[0] - 1):
    lo, hi = starts[i], starts[i + 1]
    for p in range(lo, hi):
      y, x = pixels[p, 0], pixels[p, 1]
      for ch in range(channels):
        o = lo * channels + (ch * (hi - lo) + p - lo if causal else (p - lo) * channels + ch)
        for b in range(batch):
          out[o * batch + b] = 1 if src[y, x, channel0 + ch, b] > 0 else 0


@numba.njit(**_JIT)
def layer_a1(s, w3, b3, k, a1):
  """a1 = T(conv3x3(s_k) + b) [H, W, h, B]: the state's half of the row LSTM input.
  w3 [L, 9, cd, h], b3 [L, h]: brnn/adaptation1_conv3x3, kernel as `taps3x3`."""
  height, width, cd, batch = s.shape
  block = max(1, LANES // batch)
  if block == 1:
    for y in range(height):
      for x in range(width):
        _conv_tanh(a1[y, x], b3[k], s, 0, y, x, height, _DY3, _DX3, w3[k])
    return
  hd = a1.shape[2]
  row = _row_pixels(width)
  for y in range(height):
    row[:, 0] = y
    for x0 in range(0, width, block):
      n = min(block, width - x0)
      g = np.empty((9 * cd, n * batch), dtype=np.float32)
      v = np.empty((hd, n * batch), dtype=np.float32)
      _gather(g, 0, s, 0, cd, row, x0, n, _DY3, _DX3, height)
      _dense_tanh(v, b3[k], g, w3[k].reshape(9 * cd, hd))
      _scatter(a1, v, row, x0, n)


@numba.njit(inline='always', **_JIT)
def _gather(dst, row0, img, c0, channels, pixels, p0, n, dys, dxs, height):
  """dst[row0 + t*channels + c, p*B + b] = img[y + dys[t], x + dxs[t], c0 + c, b] for the n
  pixels (y, x) = pixels[p0 + p] (lanes: pixel, then sample), 0 outside the height x W image:
  a conv's inputs for many pixels at once, taps in order, then channels (the conv's summation
  order, so `_accumulate` on them adds exactly what `_conv_tanh` adds, but for the sign of a
  zero sum: a tap outside adds 0 * w instead of nothing)."""
  width, batch = img.shape[1], img.shape[3]
  for p in range(n):
    y, x = pixels[p0 + p, 0], pixels[p0 + p, 1]
    for t in range(dys.shape[0]):
      yy, xx = y + dys[t], x + dxs[t]
      inside = 0 <= yy < height and 0 <= xx < width
      r = row0 + t * channels
      if batch == 1:  # one code: no loop over samples
        if inside:
          for c in range(channels):
            dst[r + c, p] = img[yy, xx, c0 + c, 0]
        else:
          for c in range(channels):
            dst[r + c, p] = ZERO
        continue
      for c in range(channels):
        row = dst[r + c]
        if inside:
          for b in range(batch):
            row[p * batch + b] = img[yy, xx, c0 + c, b]
        else:
          for b in range(batch):
            row[p * batch + b] = ZERO


@numba.njit(inline='always', **_JIT)
def _scatter(img, src, pixels, p0, n):
  """img[y, x, :, b] = src[:, p*B + b] for the n pixels (y, x) = pixels[p0 + p]."""
  batch = img.shape[3]
  for p in range(n):
    y, x = pixels[p0 + p, 0], pixels[p0 + p, 1]
    if batch == 1:  # one code: no loop over samples
      for c in range(src.shape[0]):
        img[y, x, c, 0] = src[c, p]
      continue
    for c in range(src.shape[0]):
      for b in range(batch):
        img[y, x, c, b] = src[c, p * batch + b]


# Lanes (pixels x samples) that `wave_step` and the state kernels compute together when a batch
# has fewer samples: a step's pixels are gathered in blocks of LANES // B.
LANES = 64
_ZERO_DY2 = np.zeros(2, np.int64)
_UP_DY3 = np.full(3, -1, np.int64)
_UP_DY1 = np.full(1, -1, np.int64)
_ZERO_D1 = np.zeros(1, np.int64)


@numba.njit(inline='always', **_JIT)
def _pixel(xs, k, y, x, weights, buffers, t0, heads, out_p, out_q, o0, z):
  """One pixel (y, x) for the B samples (lanes = samples): `wave_step`'s order."""
  w7, b7, win, wh, bl, wa, ba, wb, bb = weights
  a1, a0, hbuf, cbuf, _ = buffers
  height, batch = xs.shape[0], xs.shape[3]
  cd, hd = w7.shape[2], w7.shape[3]
  # a0 = T(masked 7x7 over the bits before (y, x)): its live taps only.
  _conv_tanh(a0[y, x], b7[k], xs, k * cd, y, x, height, _DY7, _DX7, w7[k])
  _set_bias(z, bl[k])
  _row_taps(z, a1[y], x, _INPUT_DX, win[k, A1])
  if y > 0:
    _row_taps(z, hbuf[y - 1], x, _HIDDEN_DX, wh[k])
  _row_taps(z, a0[y], x, _INPUT_DX, win[k, A0])
  _lstm_cell(z, cbuf[y - 1 if y > 0 else 0, x], y > 0, cbuf[y, x], hbuf[y, x])
  _set_bias(t0, ba[k])
  _accumulate(t0, hbuf[y, x], wa[k])
  if heads:
    t = z[:hd]  # z is free again: scratch
    _set(t, t0)
    _tanh_rows(t)
    pre = z[hd:hd + cd]
    _dense_tanh(pre, bb[k], t, wb[k])
    for ch in range(cd):
      o = o0 + ch * batch
      _quantize(pre[ch], out_p[o:o + batch], out_q[o:o + batch])


@numba.njit(inline='always', **_JIT)
def _pixels_gathered(xs, k, pixels, p0, n, lo, weights, buffers, heads, out_p, out_q):
  """pixels[p0:p0+n] of one step together (lanes = pixel, sample): each lane computes exactly
  `_pixel`'s sums (`_gather`), so the probabilities are the same bits."""
  w7, b7, win, wh, bl, wa, ba, wb, bb = weights
  a1, a0, hbuf, cbuf, t0buf = buffers
  height, batch = xs.shape[0], xs.shape[3]
  cd, hd = w7.shape[2], w7.shape[3]
  gates = bl.shape[1]
  # Lanes rounded up to whole 8-float SIMD vectors (padding lanes hold zeros, are never read
  # back): a partial vector would take a scalar loop as long as the vector part.
  lanes = -(-n * batch // 8) * 8
  taps7 = _DY7.shape[0]
  g7 = np.zeros((taps7 * cd, lanes), dtype=np.float32)
  g2 = np.zeros((2 * hd, lanes), dtype=np.float32)
  g3 = np.zeros((3 * hd, lanes), dtype=np.float32)
  v = np.zeros((hd, lanes), dtype=np.float32)   # a0, then c_prev, then t0
  z = np.empty((gates, lanes), dtype=np.float32)
  c = np.empty((hd, lanes), dtype=np.float32)
  h = np.empty((hd, lanes), dtype=np.float32)
  _gather(g7, 0, xs, k * cd, cd, pixels, p0, n, _DY7, _DX7, height)
  _dense_tanh(v, b7[k], g7, w7[k].reshape(taps7 * cd, hd))
  _scatter(a0, v, pixels, p0, n)
  _set_bias(z, bl[k])
  _gather(g2, 0, a1, 0, hd, pixels, p0, n, _ZERO_DY2, _INPUT_DX, height)
  _accumulate(z, g2, win[k, A1].reshape(2 * hd, gates))
  _gather(g3, 0, hbuf, 0, hd, pixels, p0, n, _UP_DY3, _HIDDEN_DX, height)
  _accumulate(z, g3, wh[k].reshape(3 * hd, gates))
  _gather(g2, 0, a0, 0, hd, pixels, p0, n, _ZERO_DY2, _INPUT_DX, height)
  _accumulate(z, g2, win[k, A0].reshape(2 * hd, gates))
  _gather(v, 0, cbuf, 0, hd, pixels, p0, n, _UP_DY1, _ZERO_D1, height)  # 0 on row 0
  _lstm_cell(z, v, True, c, h)
  _scatter(cbuf, c, pixels, p0, n)
  _scatter(hbuf, h, pixels, p0, n)
  _set_bias(v, ba[k])
  _accumulate(v, h, wa[k])
  for p in range(n):
    for i in range(hd):
      for b in range(batch):
        t0buf[p0 - lo + p, i, b] = v[i, p * batch + b]
  if heads:
    _tanh_rows(v)
    pre = z[:cd]  # z is free again: scratch
    _dense_tanh(pre, bb[k], v, wb[k])
    for p in range(n):
      for ch in range(cd):
        o = ((p0 + p) * cd + ch) * batch
        _quantize(pre[ch, p * batch:(p + 1) * batch], out_p[o:o + batch], out_q[o:o + batch])


@numba.njit(**_JIT)
def wave_step(xs, k, pixels, lo, hi, put_bits_, put_lo, put_hi, put_c0, put_n, weights, buffers,
              heads, out_p, out_q):
  """Advances the row LSTM of layer k to the pixels pixels[lo:hi] of one step (independent of
  each other: codec/schedule.py) for every sample of the batch.

  First writes the previous step's decoded bits. Per pixel (y, x), in this fixed order:
  z = bias + input_conv taps on a1[y, x-1..x] + hidden_conv taps on h[y-1, x-1..x+1]
  + input_conv taps on a0[y, x-1..x] (a0[y, x] computed first, from the bits before (y, x));
  the LSTM cell with c[y-1, x]; t0 (out1x1_a's pre-activation) into buffers.t0buf[p - lo];
  if `heads`, the probabilities of the pixel's cd channels into out_p / out_q. With B >= LANES
  samples (or one pixel) pixel after pixel, lanes = samples (`_pixel`); else LANES // B pixels
  at a time, lanes = (pixel, sample) (`_pixels_gathered`): the same sums either way.

  Args:
    xs: int8 [H, W, L*cd, B], the code as +-1, 0 where not decoded yet; layer k is channels
      k*cd .. k*cd + cd - 1 (spec.layer_channels).
    k: the layer. pixels int64 [H*W, 2], (y, x) in coding order; lo, hi: this step's.
    put_bits_: int32, the previous step's bits, layout [pixel][channel][sample] (put_n
      channels from k*cd + put_c0, pixels[put_lo:put_hi]); put_hi == put_lo: nothing to write.
    weights: `PixelWeights.of(net)`. buffers: `Buffers.new(...)` of the chunk.
    heads: also compute the probabilities (False in channel-causal mode: `wave_channel` does).
    out_p, out_q: float64 [H*W*cd*B], unquantised and quantised P(1) in coding order: pixel p's
      channel ch at ((p*cd) + ch)*B (p counted in coding order).
  """
  batch = xs.shape[3]
  cd = weights[0].shape[2]
  if put_hi > put_lo:
    _put_bits(xs, k * cd + put_c0, put_n, pixels, put_lo, put_hi, put_bits_)
  block = max(1, LANES // batch)
  if block == 1 or hi - lo == 1:
    z = np.empty((weights[4].shape[1], batch), dtype=np.float32)
    t0buf = buffers[4]
    for p in range(lo, hi):
      _pixel(xs, k, pixels[p, 0], pixels[p, 1], weights, buffers, t0buf[p - lo], heads, out_p,
             out_q, p * cd * batch, z)
  else:
    for p0 in range(lo, hi, block):
      _pixels_gathered(xs, k, pixels, p0, min(block, hi - p0), lo, weights, buffers, heads,
                       out_p, out_q)


@numba.njit(**_JIT)
def wave_channel(xs, k, pixels, lo, hi, ch, put_bits_, wb, bb, car, t0buf, out_p, out_q):
  """Channel-causal head of one step: P(bit ch) of pixels[lo:hi] from their t0 and their bits
  j < ch, at (lo*cd + ch*(hi - lo) + p - lo)*B in out_p / out_q (channel, pixel, sample).

  First writes the bits of channel ch-1 of the step's pixels (layout [pixel][sample]) unless
  ch == 0. wb, bb as in `PixelWeights`; car [L, cd, cd, h] brnn/channel_ar ([j, c] used for
  j < c); the other arguments as `wave_step`'s.
  """
  batch = xs.shape[3]
  cd, hd = car.shape[1], t0buf.shape[1]
  base = k * cd
  if ch > 0:
    _put_bits(xs, base + ch - 1, 1, pixels, lo, hi, put_bits_)
  t = np.empty((hd, batch), dtype=np.float32)
  pre = np.empty((1, batch), dtype=np.float32)
  for p in range(lo, hi):
    y, x = pixels[p, 0], pixels[p, 1]
    _set(t, t0buf[p - lo])
    _accumulate(t, xs[y, x, base:base + ch], car[k, :ch, ch])
    _tanh_rows(t)
    _dense_tanh(pre, bb[k, ch:ch + 1], t, wb[k, :, ch:ch + 1])
    o = (lo * cd + ch * (hi - lo) + p - lo) * batch
    _quantize(pre[0], out_p[o:o + batch], out_q[o:o + batch])


@numba.njit(inline='always', **_JIT)
def _state_u_row(xs, base, y, sak, sabk, ring):
  """ring[y % 3] [W, h, B] = T(state_block conv3x3_a(x_k) + b) for row y."""
  height = xs.shape[0]
  for x in range(xs.shape[1]):
    _conv_tanh(ring[y % 3, x], sabk, xs, base, y, x, height, _DY3, _DX3, sak)


@numba.njit(inline='always', **_JIT)
def _row_pixels(width):
  """int64 [W, 2]: the pixels (y, x) of a row, y to be filled in."""
  row = np.zeros((width, 2), dtype=np.int64)
  for x in range(width):
    row[x, 1] = x
  return row


@numba.njit(inline='always', **_JIT)
def _next_state_gathered(xs, k, state_weights, rnn_h, rnn_c, s, block):
  """`next_state` with lanes = (pixel of a row, sample), block pixels at a time: the same sums
  (`_gather`)."""
  sa, sab, sb, sbb, rin, rh, rb, ra, rab, rbw, rbb = state_weights
  height, width, _, batch = xs.shape
  cd, hd = sa.shape[2], sa.shape[3]
  f32 = np.float32
  u = np.empty((height, width, hd, batch), dtype=f32)
  row = _row_pixels(width)
  for y in range(height):
    row[:, 0] = y
    for x0 in range(0, width, block):
      n = min(block, width - x0)
      g = np.empty((9 * cd, n * batch), dtype=f32)
      ul = np.empty((hd, n * batch), dtype=f32)
      _gather(g, 0, xs, k * cd, cd, row, x0, n, _DY3, _DX3, height)
      _dense_tanh(ul, sab[k], g, sa[k].reshape(9 * cd, hd))
      _scatter(u, ul, row, x0, n)
  for y in range(height):
    row[:, 0] = y
    for x0 in range(0, width, block):
      n = min(block, width - x0)
      m = n * batch
      g = np.empty((9 * hd, m), dtype=f32)
      v = np.empty((cd, m), dtype=f32)
      z = np.empty((rb.shape[0], m), dtype=f32)
      hl = np.empty((hd, m), dtype=f32)
      cl = np.empty((hd, m), dtype=f32)
      t = np.empty((hd, m), dtype=f32)
      _gather(g, 0, u, 0, hd, row, x0, n, _DY3, _DX3, height)
      _dense_tanh(v, sbb[k], g, sb[k].reshape(9 * hd, cd))
      _gather(hl, 0, rnn_h, 0, hd, row, x0, n, _ZERO_D1, _ZERO_D1, height)
      _gather(cl, 0, rnn_c, 0, hd, row, x0, n, _ZERO_D1, _ZERO_D1, height)
      _set_bias(z, rb)
      _accumulate(z, v, rin)
      _accumulate(z, hl, rh)
      _lstm_cell(z, cl, True, cl, hl)
      _scatter(rnn_h, hl, row, x0, n)
      _scatter(rnn_c, cl, row, x0, n)
      _dense_tanh(t, rab, hl, ra)
      _dense_tanh(v, rbb, t, rbw)
      _scatter(s, v, row, x0, n)


@numba.njit(**_JIT)
def next_state(xs, k, state_weights, rnn_h, rnn_c, s):
  """s_{k+1} [H, W, cd, B] from the finished layer k; updates layer_rnn (h, c) in place.

  `state_weights`: `StateWeights.of(net)`. The state block's first conv is kept for three rows
  only (a ring buffer), so its output stays in the caches while the second conv reads it.
  """
  sa, sab, sb, sbb, rin, rh, rb, ra, rab, rbw, rbb = state_weights
  height, width, _, batch = xs.shape
  cd, hd = sa.shape[2], sa.shape[3]
  if batch < LANES:  # too few samples to fill the lanes: the pixels of a row share them
    _next_state_gathered(xs, k, state_weights, rnn_h, rnn_c, s, LANES // batch)
    return
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
def code_known_layer(xs, k, coded, pixels, starts, weights, wb, bb, car, causal, buffers, out_p,
                     out_q):
  """The encoder's step loop of layer k, run inside numba: the decoder's exact sequence of
  `wave_step` / `wave_channel` calls, fed with the known bits (coded: int32, the layer's bits
  in coding order, `coding_order_bits`) instead of decoded ones."""
  batch = xs.shape[3]
  cd = car.shape[1]
  t0buf = buffers[4]
  put = coded[:0]
  put_lo, put_hi, put_c0, put_n = 0, 0, 0, cd
  for i in range(starts.shape[0] - 1):
    lo, hi = starts[i], starts[i + 1]
    wave_step(xs, k, pixels, lo, hi, put, put_lo, put_hi, put_c0, put_n, weights, buffers,
              not causal, out_p, out_q)
    if causal:
      n = (hi - lo) * batch
      for ch in range(cd):
        o = lo * cd * batch + (ch - 1) * n
        wave_channel(xs, k, pixels, lo, hi, ch, coded[o:o + n] if ch else put[:0], wb, bb, car,
                     t0buf, out_p, out_q)
      o = lo * cd * batch + (cd - 1) * n
      put, put_c0, put_n = coded[o:o + n], cd - 1, 1
    else:
      put = coded[lo * cd * batch:hi * cd * batch]
    put_lo, put_hi = lo, hi
  _put_bits(xs, k * cd + put_c0, put_n, pixels, put_lo, put_hi, put)


class ChunkCoder:
  """Runs the model over one batch of B equal-shape codes, step by step, layer by layer.

  The contract with codec/api.py:
  * `ChunkCoder(net, batch, height, width, layers, coder_id=bitstream.CODER_ID)`; coder_id
    names the schedule (codec/schedule.py `for_coder`: 1 raster, 2 wavefront), which fixes the
    coding order: a function of (H, W, cd, channel_causal, coder_id) only.
  * `encode(codes, layer_done)`: codes uint8 [B, H, W, L*cd]; `decode(decode_bits, layer_done,
    row_done=None, known=None)`. Both return the codes, uint8 [B, H, W, L*cd].
  * Every array handed out is flat, in coding order, the sample index innermost, so
    `reshape(-1, B)` gives column b = code b's symbols in its own stream's order (that column
    is the same whatever else shares the batch):
    - decode_bits(probs): probs float64, one step's quantised P(1) (a step's pixels x cd
      channels, or in channel-causal mode one channel of the step's pixels); returns the
      decoded int32 bits in the same layout, which the next call writes into the code;
    - layer_done(k, p_model, p_coded, bits) after each layer: the unquantised and quantised
      probabilities (float64 [H*W*cd*B]) and the bits (int32, same order): what the encoder
      range-codes (`encoder.encode(bits, p_coded)`) and the theoretical code length reads;
    - row_done(k, y) when row y of layer k is complete (progress only);
    - known = {k: uint8 [B, H, W, cd]}: layers whose bits the caller has (coded outside the
      model's stream), fed as the encoder feeds them with no decode_bits call; layer_done still
      sees the model's probabilities for them.

  Both directions make the same sequence of `wave_step` (and, channel-causal, `wave_channel`)
  calls, each reading only bits written by earlier steps: decode in a Python loop (one engine
  call and one decode_bits call per step, per channel in channel-causal mode), encode inside
  numba (`code_known_layer`).
  """

  def __init__(self, net, batch, height, width, layers, coder_id=bitstream.CODER_ID):
    self.net = float32_network(net)
    self.weights = PixelWeights.of(self.net)
    self.w3 = taps3x3(self.net.w3s)
    self.state_weights = StateWeights.of(self.net)
    self.shape = (batch, height, width)
    self.layers = layers
    self.schedule = schedule.for_coder(coder_id, height, width)

  def _coding_order(self, src, channel0):
    """The layer's bits (channels channel0 .. + cd of src [H, W, C, B]) in coding order."""
    batch, height, width = self.shape
    cd = self.net.layer_depth
    out = np.empty(height * width * cd * batch, np.int32)
    coding_order_bits(src, channel0, cd, self.schedule.pixels, self.schedule.starts,
                      self.net.channel_causal, out)
    return out

  def _code_known(self, k, layer_codes, xs, buffers, out_p, out_q):
    """Feeds layer k's known bits (uint8 [B, H, W, cd]) through the step loop."""
    net = self.net
    coded = self._coding_order(np.ascontiguousarray(layer_codes.transpose(1, 2, 3, 0)), 0)
    code_known_layer(xs, k, coded, self.schedule.pixels, self.schedule.starts, self.weights,
                     net.wb, net.bb, net.car, net.channel_causal, buffers, out_p, out_q)

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
    batch, height, _ = self.shape
    cd = self.net.layer_depth
    causal = self.net.channel_causal
    heads = not causal
    weights, wb, bb, car = self.weights, self.net.wb, self.net.bb, self.net.car
    pixels = self.schedule.pixels
    starts = self.schedule.starts.tolist()
    rows = self.schedule.row_done.tolist()
    if row_done is None:
      rows = [-1] * len(rows)

    def code_layer(k, xs, buffers, out_p, out_q):
      if k in known:
        self._code_known(k, known[k], xs, buffers, out_p, out_q)
        if row_done is not None:
          for y in range(height):
            row_done(k, y)
        return
      # This loop runs once per step per layer for the whole batch: kept lean on purpose.
      t0buf = buffers[4]
      bits, put_lo, put_hi, put_c0, put_n = _NO_BITS, 0, 0, 0, cd
      for i in range(len(starts) - 1):
        lo, hi = starts[i], starts[i + 1]
        wave_step(xs, k, pixels, lo, hi, bits, put_lo, put_hi, put_c0, put_n, weights, buffers,
                  heads, out_p, out_q)
        o = lo * cd * batch
        if causal:
          n = (hi - lo) * batch
          bits = _NO_BITS
          for ch in range(cd):
            wave_channel(xs, k, pixels, lo, hi, ch, bits, wb, bb, car, t0buf, out_p, out_q)
            bits = decode_bits(out_q[o + ch * n:o + (ch + 1) * n])
          put_c0, put_n = cd - 1, 1
        else:
          bits = decode_bits(out_q[o:hi * cd * batch])
        put_lo, put_hi = lo, hi
        if rows[i] >= 0:
          row_done(k, rows[i])
      put_bits(xs, k * cd + put_c0, put_n, pixels, put_lo, put_hi, bits)  # the last step's

    return self._run(code_layer, layer_done)

  def _run(self, code_layer, layer_done):
    batch, height, width = self.shape
    cd = self.net.layer_depth
    hd = self.weights[0].shape[3]  # w7 [L, 24, cd, h]
    xs = np.zeros((height, width, self.layers * cd, batch), dtype=np.int8)
    s = np.zeros((height, width, cd, batch), np.float32)
    rnn_h = np.zeros((height, width, hd, batch), np.float32)
    rnn_c = np.zeros_like(rnn_h)
    buffers = Buffers.new(height, width, hd, batch, self.schedule.widest)
    out_p = np.empty(height * width * cd * batch)  # in coding order, sample innermost
    out_q = np.empty(height * width * cd * batch)
    for k in range(self.layers):
      layer_a1(s, self.w3, self.net.b3s, k, buffers[0])
      code_layer(k, xs, buffers, out_p, out_q)
      layer_done(k, out_p, out_q, self._coding_order(xs, k * cd))
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


def engine_probabilities(net, codes, coder_id=bitstream.CODER_ID):
  """The engine's P(bit = 1) for complete codes uint8 [B, H, W, D] -> (model, coded) float64
  [B, H, W, D]: exactly what the encoder computes (tests, diagnostics)."""
  codes = np.asarray(codes, dtype=np.uint8)
  batch, height, width, depth = codes.shape
  cd = net.layer_depth
  layers = net.layers_of(depth, '<codes>')
  p_model = np.empty((batch, height, width, depth))
  p_coded = np.empty_like(p_model)
  coder = ChunkCoder(net, batch, height, width, layers, coder_id)
  positions = schedule.raster_positions(coder.schedule, width, cd, net.channel_causal)

  def layer_done(k, out_p, out_q, _):
    for target, source in ((p_model, out_p), (p_coded, out_q)):
      raster = np.empty((height * width * cd, batch))
      raster[positions] = source.reshape(-1, batch)
      target[..., spec.layer_channels(k, cd)] = raster.reshape(height, width, cd, batch).transpose(
          3, 0, 1, 2)

  coder.encode(codes, layer_done)
  return p_model, p_coded
