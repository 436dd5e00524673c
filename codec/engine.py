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
"""
import dataclasses

import numba
import numpy as np

from entropy_coder.codec.arith import JIT_OPTIONS as _JIT
from entropy_coder.codec.arith import F32, HALF, ONE, ZERO, sigmoid_, tanh_
from entropy_coder.codec.network import PRED_CLIP, TAPS_7X7

# Probabilities reach the range coder as q / 2^16 with q an integer in [1, 2^16 - 1].
PROB_BITS = 16
_PROB_SCALE = F32(1 << PROB_BITS)
_PROB_SCALE_F64 = float(1 << PROB_BITS)
_CLIP = F32(PRED_CLIP)
_TAP_DY = np.array([dy for dy, _ in TAPS_7X7], dtype=np.int64)
_TAP_DX = np.array([dx for _, dx in TAPS_7X7], dtype=np.int64)


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
def _put_bits(xs, channel0, y, x, bits):
  """Writes a pixel's decoded bits (layout [channel][sample]) as +-1 into xs [H, W, D, B] (int8;
  0 = not decoded yet). int8 keeps the 7x7 window of a batch in the fast caches."""
  batch = xs.shape[3]
  for i in range(bits.shape[0] // batch):
    for b in range(batch):
      xs[y, x, channel0 + i, b] = 2 * bits[i * batch + b] - 1


@numba.njit(**_JIT)
def put_bits(xs, channel0, y, x, bits):
  _put_bits(xs, channel0, y, x, bits)


@numba.njit(**_JIT)
def layer_a1(s, w3s, b3s, k, a1):
  """a1 = T(conv3x3(s_k) + b) [H, W, h, B]: the state's half of the row LSTM input."""
  height, width, cd, batch = s.shape
  hd = a1.shape[2]
  w = w3s[k]
  for y in range(height):
    for x in range(width):
      acc = a1[y, x]
      for o in range(hd):
        for b in range(batch):
          acc[o, b] = b3s[k, o]
      for ky in range(3):
        yy = y + ky - 1
        if yy < 0 or yy >= height:
          continue
        for kx in range(3):
          xx = x + kx - 1
          if xx < 0 or xx >= width:
            continue
          for i in range(cd):
            src = s[yy, xx, i]
            for o in range(hd):
              wv = w[ky, kx, i, o]
              for b in range(batch):
                acc[o, b] += src[b] * wv
      for o in range(hd):
        tanh_(acc[o])


@numba.njit(inline='always', **_JIT)
def _row_start(y, a1, wink, whk, blk, hbuf, zrow):
  """zrow[x] = bias + a1 taps (x-1, x) + hidden taps on row y-1, for the whole row y."""
  width, hd, batch = a1.shape[1], a1.shape[2], a1.shape[3]
  g = zrow.shape[1]
  prev = (y + 1) % 2
  for x in range(width):
    z = zrow[x]
    for o in range(g):
      for b in range(batch):
        z[o, b] = blk[o]
    for tap in range(2):
      xx = x + tap - 1
      if xx < 0:
        continue
      for i in range(hd):
        src = a1[y, xx, i]
        for o in range(g):
          wv = wink[tap, hd + i, o]
          for b in range(batch):
            z[o, b] += src[b] * wv
    if y > 0:
      for tap in range(3):
        xx = x + tap - 1
        if xx < 0 or xx >= width:
          continue
        for i in range(hd):
          src = hbuf[prev, xx, i]
          for o in range(g):
            wv = whk[tap, i, o]
            for b in range(batch):
              z[o, b] += src[b] * wv


@numba.njit(**_JIT)
def pixel_step(xs, k, y, x, put_bits_, put_y, put_x, put_c0,
               w7, b7, win, wh, bl, wa, ba, wb, bb, a1, zrow, a0row, hbuf, cbuf, t0buf,
               heads, out_p, out_q, slot):
  """Advances the row LSTM of layer k to pixel (y, x) for every sample of the batch.

  First writes the previous pixel's decoded bits (`put_*`; put_y < 0: none). Leaves t0 (the
  pre-activation of out1x1_a) in t0buf and, if `heads`, the probabilities of all cd channels
  in out_p / out_q[slot] (flat, layout [channel][sample]).
  """
  height, width, _, batch = xs.shape
  cd = b7.shape[1] // 2
  hd = 2 * cd
  g = 4 * hd
  base = k * cd
  cur = y % 2
  prev = (y + 1) % 2
  w7k, b7k, wink, whk, blk = w7[k], b7[k], win[k], wh[k], bl[k]
  wak, bak, wbk, bbk = wa[k], ba[k], wb[k], bb[k]
  z = np.empty((g, batch), dtype=np.float32)
  if put_y >= 0:
    _put_bits(xs, base + put_c0, put_y, put_x, put_bits_)
  if x == 0:
    _row_start(y, a1, wink, whk, blk, hbuf, zrow)
  # a0 = T(masked 7x7 over the bits before (y, x)); zero padding: outside taps add nothing.
  acc = a0row[x]
  for o in range(hd):
    for b in range(batch):
      acc[o, b] = b7k[o]
  for tp in range(_TAP_DY.shape[0]):
    yy = y + _TAP_DY[tp]
    xx = x + _TAP_DX[tp]
    if yy < 0 or xx < 0 or xx >= width:
      continue
    for i in range(cd):
      src = xs[yy, xx, base + i]
      for o in range(hd):
        wv = w7k[tp, i, o]
        for b in range(batch):
          acc[o, b] += src[b] * wv
  for o in range(hd):
    tanh_(acc[o])
  # Row LSTM input: the precomputed row part plus the a0 taps x-1 and x.
  zx = zrow[x]
  for o in range(g):
    for b in range(batch):
      z[o, b] = zx[o, b]
  for tap in range(2):
    xx = x + tap - 1
    if xx < 0:
      continue
    for i in range(hd):
      src = a0row[xx, i]
      for o in range(g):
        wv = wink[tap, i, o]
        for b in range(batch):
          z[o, b] += src[b] * wv
  for o in range(hd):
    sigmoid_(z[o])
    sigmoid_(z[hd + o])
    tanh_(z[2 * hd + o])
    sigmoid_(z[3 * hd + o])
  hx = hbuf[cur, x]
  cx = cbuf[cur, x]
  cp = cbuf[prev, x]
  for o in range(hd):
    for b in range(batch):
      c_prev = cp[o, b] if y > 0 else ZERO
      cx[o, b] = z[o, b] * c_prev + z[hd + o, b] * z[2 * hd + o, b]
      hx[o, b] = cx[o, b]
    tanh_(hx[o])
    for b in range(batch):
      hx[o, b] *= z[3 * hd + o, b]
  for o in range(hd):
    for b in range(batch):
      t0buf[o, b] = bak[o]
  for i in range(hd):
    src = hx[i]
    for o in range(hd):
      wv = wak[i, o]
      for b in range(batch):
        t0buf[o, b] += src[b] * wv
  if heads:
    t = z[:hd]  # reuse as scratch
    for o in range(hd):
      for b in range(batch):
        t[o, b] = t0buf[o, b]
      tanh_(t[o])
    pre = z[hd:hd + cd]
    for ch in range(cd):
      for b in range(batch):
        pre[ch, b] = bbk[ch]
      for i in range(hd):
        wv = wbk[i, ch]
        for b in range(batch):
          pre[ch, b] += t[i, b] * wv
      tanh_(pre[ch])
      _quantize(pre[ch], out_p[slot, ch * batch:(ch + 1) * batch],
                out_q[slot, ch * batch:(ch + 1) * batch])


@numba.njit(**_JIT)
def channel_head(xs, k, y, x, ch, put_bits_, wb, bb, car, t0buf, out_p, out_q, slot):
  """Channel-causal head: P(bit ch of pixel (y, x)) from t0 and that pixel's bits j < ch.

  First writes the bits of channel ch-1 (decoded after the previous call) unless ch == 0.
  """
  batch = xs.shape[3]
  cd = bb.shape[1]
  hd = t0buf.shape[0]
  base = k * cd
  if ch > 0:
    _put_bits(xs, base + ch - 1, y, x, put_bits_)
  t = np.empty((hd, batch), dtype=np.float32)
  pre = np.empty((1, batch), dtype=np.float32)
  for i in range(hd):
    for b in range(batch):
      t[i, b] = t0buf[i, b]
    for j in range(ch):
      wv = car[k, j, ch, i]
      src = xs[y, x, base + j]
      for b in range(batch):
        t[i, b] += src[b] * wv
    tanh_(t[i])
  for b in range(batch):
    pre[0, b] = bb[k, ch]
  for i in range(hd):
    wv = wb[k, i, ch]
    for b in range(batch):
      pre[0, b] += t[i, b] * wv
  tanh_(pre[0])
  _quantize(pre[0], out_p[slot, ch * batch:(ch + 1) * batch],
            out_q[slot, ch * batch:(ch + 1) * batch])


@numba.njit(inline='always', **_JIT)
def _state_u_row(xs, base, y, sak, sabk, urow):
  """urow [W, h, B] = T(state_block conv3x3_a(x_k) + b) for row y."""
  height, width, _, batch = xs.shape
  cd, hd = sak.shape[2], sak.shape[3]
  for x in range(width):
    acc = urow[x]
    for o in range(hd):
      for b in range(batch):
        acc[o, b] = sabk[o]
    for ky in range(3):
      yy = y + ky - 1
      if yy < 0 or yy >= height:
        continue
      for kx in range(3):
        xx = x + kx - 1
        if xx < 0 or xx >= width:
          continue
        for i in range(cd):
          src = xs[yy, xx, base + i]
          for o in range(hd):
            wv = sak[ky, kx, i, o]
            for b in range(batch):
              acc[o, b] += src[b] * wv
    for o in range(hd):
      tanh_(acc[o])


@numba.njit(**_JIT)
def next_state(xs, k, sa, sab, sb, sbb, rin, rh, rb, ra, rab, rbw, rbb, rnn_h, rnn_c, s):
  """s_{k+1} [H, W, cd, B] from the finished layer k; updates layer_rnn (h, c) in place.

  The state block's first conv is kept for three rows only (a ring buffer), so its output
  stays in the caches while the second conv reads it.
  """
  height, width, _, batch = xs.shape
  cd = sab.shape[1] // 2
  hd = 2 * cd
  g = 4 * hd
  base = k * cd
  sak, sabk, sbk, sbbk = sa[k], sab[k], sb[k], sbb[k]
  ring = np.empty((3, width, hd, batch), dtype=np.float32)
  v = np.empty((cd, batch), dtype=np.float32)
  z = np.empty((g, batch), dtype=np.float32)
  t = np.empty((hd, batch), dtype=np.float32)
  _state_u_row(xs, base, 0, sak, sabk, ring[0])
  for y in range(height):
    if y + 1 < height:
      _state_u_row(xs, base, y + 1, sak, sabk, ring[(y + 1) % 3])
    for x in range(width):
      for o in range(cd):
        for b in range(batch):
          v[o, b] = sbbk[o]
      for ky in range(3):
        yy = y + ky - 1
        if yy < 0 or yy >= height:
          continue
        urow = ring[yy % 3]
        for kx in range(3):
          xx = x + kx - 1
          if xx < 0 or xx >= width:
            continue
          for i in range(hd):
            src = urow[xx, i]
            for o in range(cd):
              wv = sbk[ky, kx, i, o]
              for b in range(batch):
                v[o, b] += src[b] * wv
      for o in range(cd):
        tanh_(v[o])
      hr = rnn_h[y, x]
      cr = rnn_c[y, x]
      for o in range(g):
        for b in range(batch):
          z[o, b] = rb[o]
      for i in range(cd):
        for o in range(g):
          wv = rin[i, o]
          for b in range(batch):
            z[o, b] += v[i, b] * wv
      for i in range(hd):
        for o in range(g):
          wv = rh[i, o]
          for b in range(batch):
            z[o, b] += hr[i, b] * wv
      for o in range(hd):
        sigmoid_(z[o])
        sigmoid_(z[hd + o])
        tanh_(z[2 * hd + o])
        sigmoid_(z[3 * hd + o])
        for b in range(batch):
          cr[o, b] = z[o, b] * cr[o, b] + z[hd + o, b] * z[2 * hd + o, b]
          hr[o, b] = cr[o, b]
        tanh_(hr[o])
        for b in range(batch):
          hr[o, b] *= z[3 * hd + o, b]
      for o in range(hd):
        for b in range(batch):
          t[o, b] = rab[o]
      for i in range(hd):
        for o in range(hd):
          wv = ra[i, o]
          for b in range(batch):
            t[o, b] += hr[i, b] * wv
      for o in range(hd):
        tanh_(t[o])
      so = s[y, x]
      for o in range(cd):
        for b in range(batch):
          so[o, b] = rbb[o]
        for i in range(hd):
          wv = rbw[i, o]
          for b in range(batch):
            so[o, b] += t[i, b] * wv
        tanh_(so[o])


@numba.njit(**_JIT)
def code_known_layer(xs, k, layer_bits, w7, b7, win, wh, bl, wa, ba, wb, bb, car, causal,
                     a1, zrow, a0row, hbuf, cbuf, t0buf, out_p, out_q):
  """The encoder's pixel loop of layer k, run inside numba: the decoder's exact sequence of
  `pixel_step` / `channel_head` calls, fed with the known bits (layer_bits [H, W, cd, B] int32)
  instead of decoded ones. Fills out_p / out_q[y * W + x] for every pixel."""
  height, width, cd, batch = layer_bits.shape
  put = layer_bits[0, 0].reshape(cd * batch)[:0]
  put_y, put_x, put_c0 = -1, 0, 0
  for y in range(height):
    for x in range(width):
      slot = y * width + x
      pixel_step(xs, k, y, x, put, put_y, put_x, put_c0, w7, b7, win, wh, bl, wa, ba, wb, bb,
                 a1, zrow, a0row, hbuf, cbuf, t0buf, not causal, out_p, out_q, slot)
      if causal:
        for ch in range(cd):
          channel_head(xs, k, y, x, ch, layer_bits[y, x, ch - 1] if ch else put[:0],
                       wb, bb, car, t0buf, out_p, out_q, slot)
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
    self.shape = (batch, height, width)
    self.layers = layers

  def encode(self, codes, layer_done):
    cd = self.net.layer_depth
    layer_bits = [np.ascontiguousarray(codes[..., k * cd:(k + 1) * cd].transpose(1, 2, 3, 0),
                                       dtype=np.int32) for k in range(self.layers)]
    net = self.net

    def code_layer(k, xs, buffers, out_p, out_q):
      code_known_layer(xs, k, layer_bits[k], net.w7, net.b7, net.win, net.wh, net.bl, net.wa,
                       net.ba, net.wb, net.bb, net.car, net.channel_causal, *buffers, out_p, out_q)

    return self._run(code_layer, layer_done)

  def decode(self, decode_bits, layer_done, row_done=None):
    """decode_bits(probs) -> int32 bits of one step; row_done(k, y) after each row (progress)."""
    net = self.net
    batch, height, width = self.shape
    cd = net.layer_depth
    causal = net.channel_causal
    heads = not causal
    w7, b7, win, wh, bl, wa, ba, wb, bb, car = (net.w7, net.b7, net.win, net.wh, net.bl, net.wa,
                                                net.ba, net.wb, net.bb, net.car)

    def code_layer(k, xs, buffers, out_p, out_q):
      # This loop runs H*W times per layer for the whole batch: kept lean on purpose.
      a1, zrow, a0row, hbuf, cbuf, t0buf = buffers
      bits, put_y, put_x, put_c0 = _NO_BITS, -1, 0, 0
      slot = 0
      for y in range(height):
        for x in range(width):
          pixel_step(xs, k, y, x, bits, put_y, put_x, put_c0, w7, b7, win, wh, bl, wa, ba, wb,
                     bb, a1, zrow, a0row, hbuf, cbuf, t0buf, heads, out_p, out_q, slot)
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
    net = self.net
    batch, height, width = self.shape
    cd, hd = net.layer_depth, 2 * net.layer_depth
    xs = np.zeros((height, width, self.layers * cd, batch), dtype=np.int8)
    f32 = np.float32
    s = np.zeros((height, width, cd, batch), f32)
    rnn_h = np.zeros((height, width, hd, batch), f32)
    rnn_c = np.zeros_like(rnn_h)
    a1 = np.empty((height, width, hd, batch), f32)
    buffers = (a1, np.empty((width, 4 * hd, batch), f32), np.empty((width, hd, batch), f32),
               np.zeros((2, width, hd, batch), f32), np.zeros((2, width, hd, batch), f32),
               np.empty((hd, batch), f32))  # a1, zrow, a0row, hbuf, cbuf, t0buf
    out_p = np.empty((height * width, cd * batch))  # per pixel: [channel][sample]
    out_q = np.empty((height * width, cd * batch))
    for k in range(self.layers):
      layer_a1(s, net.w3s, net.b3s, k, a1)
      code_layer(k, xs, buffers, out_p, out_q)
      layer_done(k, out_p, out_q, (xs[:, :, k * cd:(k + 1) * cd] > 0).astype(np.int32).reshape(-1))
      if k + 1 < self.layers:
        next_state(xs, k, net.sa, net.sab, net.sb, net.sbb, net.rin, net.rh, net.rb,
                   net.ra, net.rab, net.rbw, net.rbb, rnn_h, rnn_c, s)
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
      target[..., k * cd:(k + 1) * cd] = source.reshape(height, width, cd, batch).transpose(3, 0, 1, 2)

  ChunkCoder(net, batch, height, width, layers).encode(codes, layer_done)
  return p_model, p_coded
