"""Incremental probabilities of the progressive model: one pixel at a time, many samples at once.

The decoder learns the bits of pixel (y, x) only after it has decoded them, so it must evaluate
the model pixel by pixel. Re-running the whole network per pixel (naive.py) costs O((H*W)^2);
here every pixel adds only what it changes:

    per layer k, once:   s_k (from the finished layer k-1) -> a1 = T(conv3x3(s_k))
    per row y, once:     zrow[x] = bias + input_conv taps on a1[y, x-1], a1[y, x]
                                  + hidden_conv on the finished row y-1 (h[y-1, x-1..x+1])
    per pixel (y, x):    a0 = T(masked 7x7 window of earlier bits)             (24 taps)
                         z  = zrow[x] + input_conv taps on a0[y, x-1], a0[y, x]
                         (h, c) = LSTM gates(z, c[y-1, x]);  t0 = out1x1_a(h)
                         P(bit ch = 1) from T(out1x1_b(T(t0 [+ channel_ar on bits j < ch])))

THE ENCODER AND THE DECODER RUN THIS SAME CODE (`ChunkCoder.run`): for each coding step it hands
the quantised probabilities to an `exchange` callback and writes the bits it gets back into the
code before the next step reads them; the decoder's callback decodes them, the encoder's looks
them up in the input. Nothing depends on the batch size or the thread count: arrays are laid out
[..., sample] and every loop runs over samples innermost, so each sample's arithmetic is the same
float64 sequence (fixed summation order, deterministic exp/tanh from arith.py, no fastmath)
whether it runs alone, in a SIMD lane or in a batch of 128. Probabilities are rounded to a 1/2^16
grid (`_quantize`) before they reach the range coder.
"""
import numba
import numpy as np

from entropy_coder.codec.arith import sigmoid_, tanh_
from entropy_coder.codec.network import PRED_CLIP, TAPS_7X7

# Probabilities reach the range coder as q / 2^16 with q an integer in [1, 2^16 - 1].
PROB_BITS = 16
_PROB_SCALE = float(1 << PROB_BITS)
_TAP_DY = np.array([dy for dy, _ in TAPS_7X7], dtype=np.int64)
_TAP_DX = np.array([dx for _, dx in TAPS_7X7], dtype=np.int64)

_JIT = dict(nogil=True, cache=True)


@numba.njit(inline='always', **_JIT)
def _quantize(pred, out_p, out_q):
  """pred row in (-1, 1) -> P(1) as the model says (out_p) and on the coder's grid (out_q)."""
  for b in range(pred.shape[0]):
    v = pred[b]
    v = v if v < PRED_CLIP else PRED_CLIP
    v = v if v > -PRED_CLIP else -PRED_CLIP
    p = (v + 1.0) * 0.5
    q = np.floor(p * _PROB_SCALE + 0.5)
    q = q if q > 1.0 else 1.0
    q = q if q < _PROB_SCALE - 1.0 else _PROB_SCALE - 1.0
    out_p[b] = p
    out_q[b] = q / _PROB_SCALE


@numba.njit(inline='always', **_JIT)
def _put_bits(xs, channel0, y, x, bits):
  """Writes a pixel's decoded bits (layout [channel][sample]) as +-1 into xs [H, W, D, B]."""
  batch = xs.shape[3]
  for i in range(bits.shape[0] // batch):
    for b in range(batch):
      xs[y, x, channel0 + i, b] = 2.0 * bits[i * batch + b] - 1.0


@numba.njit(**_JIT)
def put_bits(xs, channel0, y, x, bits):
  _put_bits(xs, channel0, y, x, bits)


@numba.njit(**_JIT)
def layer_a1(s, w3s, b3s, k, a1):
  """a1 = T(conv3x3(s_k) + b) [H, W, h, B]: the state's half of the row LSTM input."""
  height, width, cd, batch = s.shape
  hd = a1.shape[2]
  w = w3s[k]
  tmp = np.empty((2, batch))
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
        tanh_(acc[o], tmp[0], tmp[1])


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
  in out_p / out_q[slot] (layout [channel][sample]).
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
  tmp = np.empty((2, batch))
  z = np.empty((g, batch))
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
    tanh_(acc[o], tmp[0], tmp[1])
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
    sigmoid_(z[o], tmp[0], tmp[1])
    sigmoid_(z[hd + o], tmp[0], tmp[1])
    tanh_(z[2 * hd + o], tmp[0], tmp[1])
    sigmoid_(z[3 * hd + o], tmp[0], tmp[1])
  hx = hbuf[cur, x]
  cx = cbuf[cur, x]
  cp = cbuf[prev, x]
  for o in range(hd):
    for b in range(batch):
      c_prev = cp[o, b] if y > 0 else 0.0
      cx[o, b] = z[o, b] * c_prev + z[hd + o, b] * z[2 * hd + o, b]
      hx[o, b] = cx[o, b]
    tanh_(hx[o], tmp[0], tmp[1])
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
      tanh_(t[o], tmp[0], tmp[1])
    pre = z[hd:hd + cd]
    for ch in range(cd):
      for b in range(batch):
        pre[ch, b] = bbk[ch]
      for i in range(hd):
        wv = wbk[i, ch]
        for b in range(batch):
          pre[ch, b] += t[i, b] * wv
      tanh_(pre[ch], tmp[0], tmp[1])
      _quantize(pre[ch], out_p[slot, ch], out_q[slot, ch])


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
  tmp = np.empty((2, batch))
  t = np.empty((hd, batch))
  pre = np.empty((1, batch))
  for i in range(hd):
    for b in range(batch):
      t[i, b] = t0buf[i, b]
    for j in range(ch):
      wv = car[k, j, ch, i]
      src = xs[y, x, base + j]
      for b in range(batch):
        t[i, b] += src[b] * wv
    tanh_(t[i], tmp[0], tmp[1])
  for b in range(batch):
    pre[0, b] = bb[k, ch]
  for i in range(hd):
    wv = wb[k, i, ch]
    for b in range(batch):
      pre[0, b] += t[i, b] * wv
  tanh_(pre[0], tmp[0], tmp[1])
  _quantize(pre[0], out_p[slot, ch], out_q[slot, ch])


@numba.njit(**_JIT)
def next_state(xs, k, sa, sab, sb, sbb, rin, rh, rb, ra, rab, rbw, rbb, rnn_h, rnn_c, s):
  """s_{k+1} [H, W, cd, B] from the finished layer k; updates layer_rnn (h, c) in place."""
  height, width, _, batch = xs.shape
  cd = sab.shape[1] // 2
  hd = 2 * cd
  g = 4 * hd
  base = k * cd
  sak, sabk, sbk, sbbk = sa[k], sab[k], sb[k], sbb[k]
  u = np.empty((height, width, hd, batch))
  tmp = np.empty((2, batch))
  v = np.empty((cd, batch))
  z = np.empty((g, batch))
  t = np.empty((hd, batch))
  for y in range(height):
    for x in range(width):
      acc = u[y, x]
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
        tanh_(acc[o], tmp[0], tmp[1])
  for y in range(height):
    for x in range(width):
      for o in range(cd):
        for b in range(batch):
          v[o, b] = sbbk[o]
      for ky in range(3):
        yy = y + ky - 1
        if yy < 0 or yy >= height:
          continue
        for kx in range(3):
          xx = x + kx - 1
          if xx < 0 or xx >= width:
            continue
          for i in range(hd):
            src = u[yy, xx, i]
            for o in range(cd):
              wv = sbk[ky, kx, i, o]
              for b in range(batch):
                v[o, b] += src[b] * wv
      for o in range(cd):
        tanh_(v[o], tmp[0], tmp[1])
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
        sigmoid_(z[o], tmp[0], tmp[1])
        sigmoid_(z[hd + o], tmp[0], tmp[1])
        tanh_(z[2 * hd + o], tmp[0], tmp[1])
        sigmoid_(z[3 * hd + o], tmp[0], tmp[1])
        for b in range(batch):
          cr[o, b] = z[o, b] * cr[o, b] + z[hd + o, b] * z[2 * hd + o, b]
          hr[o, b] = cr[o, b]
        tanh_(hr[o], tmp[0], tmp[1])
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
        tanh_(t[o], tmp[0], tmp[1])
      so = s[y, x]
      for o in range(cd):
        for b in range(batch):
          so[o, b] = rbb[o]
        for i in range(hd):
          wv = rbw[i, o]
          for b in range(batch):
            so[o, b] += t[i, b] * wv
        tanh_(so[o], tmp[0], tmp[1])


class ChunkCoder:
  """Runs the model over one batch of B equal-shape codes, pixel by pixel, layer by layer.

  `run(exchange)` is the one probability path of both directions. For every coding step (a
  pixel, or one channel of a pixel in channel-causal mode) it calls `exchange(k, probs)` with
  the quantised P(1) of that step (float64, layout [channel][sample]) and gets back the int32
  bits of the step in the same layout, which it writes into the code before the next step. The
  decoder's exchange decodes them; the encoder's returns the input's bits and keeps the
  probabilities. `layer_done(k, p_model, p_coded)` (optional) sees a layer's unquantised and
  quantised probabilities, [H*W, cd, B] in coding order, when the layer is finished.
  Returns the codes, uint8 [B, H, W, layers*cd].
  """

  def __init__(self, net, batch, height, width, layers):
    self.net = net
    self.shape = (batch, height, width)
    self.layers = layers

  def run(self, exchange, layer_done=None):
    net = self.net
    batch, height, width = self.shape
    cd, hd = net.layer_depth, 2 * net.layer_depth
    causal = net.channel_causal
    xs = np.zeros((height, width, self.layers * cd, batch))
    s = np.zeros((height, width, cd, batch))
    rnn_h = np.zeros((height, width, hd, batch))
    rnn_c = np.zeros_like(rnn_h)
    a1 = np.empty((height, width, hd, batch))
    zrow = np.empty((width, 4 * hd, batch))
    a0row = np.empty((width, hd, batch))
    hbuf = np.zeros((2, width, hd, batch))
    cbuf = np.zeros((2, width, hd, batch))
    t0buf = np.empty((hd, batch))
    slots = height * width if layer_done is not None else 1
    out_p = np.empty((slots, cd, batch))
    out_q = np.empty((slots, cd, batch))
    for k in range(self.layers):
      layer_a1(s, net.w3s, net.b3s, k, a1)
      bits, put_y, put_x, put_c0 = None, -1, 0, 0
      for y in range(height):
        for x in range(width):
          slot = y * width + x if slots > 1 else 0
          pixel_step(xs, k, y, x, bits if bits is not None else _NO_BITS, put_y, put_x, put_c0,
                     net.w7, net.b7, net.win, net.wh, net.bl, net.wa, net.ba, net.wb, net.bb,
                     a1, zrow, a0row, hbuf, cbuf, t0buf, not causal, out_p, out_q, slot)
          if causal:
            bits = _NO_BITS
            for ch in range(cd):
              channel_head(xs, k, y, x, ch, bits, net.wb, net.bb, net.car, t0buf, out_p, out_q, slot)
              bits = exchange(k, out_q[slot, ch])
            put_c0 = cd - 1
          else:
            bits = exchange(k, out_q[slot].reshape(-1))
            put_c0 = 0
          put_y, put_x = y, x
      put_bits(xs, k * cd + put_c0, put_y, put_x, bits)  # the layer's last pixel
      if layer_done is not None:
        layer_done(k, out_p, out_q)
      if k + 1 < self.layers:
        next_state(xs, k, net.sa, net.sab, net.sb, net.sbb, net.rin, net.rh, net.rb,
                   net.ra, net.rab, net.rbw, net.rbb, rnn_h, rnn_c, s)
    return np.ascontiguousarray((xs > 0).astype(np.uint8).transpose(3, 0, 1, 2))


_NO_BITS = np.zeros(0, dtype=np.int32)


def engine_probabilities(net, codes):
  """The engine's P(bit = 1) for complete codes uint8 [B, H, W, D] -> (model, coded) float64
  [B, H, W, D]: exactly what the encoder computes (tests, diagnostics)."""
  codes = np.asarray(codes, dtype=np.uint8)
  batch, height, width, depth = codes.shape
  cd = net.layer_depth
  layers = net.layers_of(depth, '<codes>')
  order = [np.ascontiguousarray(codes[..., k * cd:(k + 1) * cd].transpose(1, 2, 3, 0),
                                dtype=np.int32) for k in range(layers)]
  steps = iter([(k, y, x, ch) for k in range(layers) for y in range(height) for x in range(width)
                for ch in (range(cd) if net.channel_causal else [None])])
  p_model = np.empty((batch, height, width, depth))
  p_coded = np.empty_like(p_model)

  def exchange(k, probs):
    _, y, x, ch = next(steps)
    return order[k][y, x].reshape(-1) if ch is None else order[k][y, x, ch]

  def layer_done(k, out_p, out_q):
    for target, source in ((p_model, out_p), (p_coded, out_q)):
      target[..., k * cd:(k + 1) * cd] = source.reshape(height, width, cd, batch).transpose(3, 0, 1, 2)

  ChunkCoder(net, batch, height, width, layers).run(exchange, layer_done)
  return p_model, p_coded
