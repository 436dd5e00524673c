"""The naive decoder: the best decoder we could write without an incremental engine. The speed
baseline of bench/bench_codec.py.

A decoder that knows only the bits decoded so far must get each pixel's probabilities from the
partial code. Without an incremental engine it re-evaluates the model on the partial code at
every pixel step, but it need not re-evaluate what the layer's bits cannot change, nor what
cannot reach the pixel:

    per layer k, once (none of it depends on layer k's bits):
        the state s_k (from the finished layer k-1, `full_forward._next_state`),
        a1 = T(conv3x3(s_k)) and its half of the row LSTM input, zs = bias + input_conv(a1)
    per pixel step (k, y, x), from the partial code of layer k, for rows r = 0..y only
    (nothing below row y reaches pixel (y, x)), row by row over all W pixels and B codes:
        a0 = T(masked 7x7 of the layer's bits)         (one im2col copy, one matmul)
        z  = zs + input_conv(a0) + hidden_conv(h[r-1]) (two matmuls), the LSTM gates -> h[r]
    then the heads at (y, x) only -> P(1) of its cd bits (channel-causal: one at a time).

It keeps nothing from one pixel step to the next (that is the engine's idea), so it costs
O(H^2 W) per pixel step instead of the engine's O(1): the difference the benchmark measures.
Vectorised numpy, float32 like the engine (faster than float64 here), arrays laid out
[channel, (y, x,) code] so that each copy moves whole rows of codes and each matmul is one BLAS
call over a row's W x B pixels.

Exactness. Row r is computed by the same code with the same array shapes whichever step
computes it, and the encoder (`naive_probabilities`) runs that same code once per layer. A
pixel's result never depends on the values of the pixels after it (masked taps are absent, and
an element of a matmul or ufunc depends only on its own operands), so encoder and decoder get
the same float32 bits. Streams are [layer][y][x][channel][code] on the 1/2^16 grid, the
engine's order; they are not the engine's bytes (other float arithmetic).
"""
import numpy as np

from entropy_coder.codec.engine import PROB_BITS
from entropy_coder.codec.full_forward import _conv3x3, _next_state
from entropy_coder.codec.engine_weights import PRED_CLIP, TAPS_7X7
from entropy_coder.codec.range_coder import StreamDecoder, StreamEncoder
from entropy_coder.trainer import spec

_SCALE = float(1 << PROB_BITS)
DTYPE = np.float32
# The live taps as offsets into the padded code (3 rows above, 3 columns left and right).
_TAPS = tuple((dy + 3, dx + 3) for dy, dx in TAPS_7X7)


def quantize(probs):
  """P(1) -> the coder's 1/2^16 grid (round to nearest, never 0 or 1)."""
  q = np.floor(np.asarray(probs, np.float64) * _SCALE + 0.5)
  return np.clip(q, 1.0, _SCALE - 1.0) / _SCALE


def _sigmoid(v):
  return 1 / (1 + np.exp(-v))


class _Layer:
  """Layer k of one batch: the per-layer constants, and the per-step re-evaluation. Arrays are
  laid out [channel, (y, x,) sample], so every im2col copy moves whole rows of samples and every
  matmul is one BLAS call over all pixels."""

  def __init__(self, net, k, s, width):
    cd, hd = net.layer_depth, net.hidden_depth
    f = lambda a: np.ascontiguousarray(a, dtype=DTYPE)
    self.cd, self.hd, self.width = cd, hd, width
    self.w7 = f(net.w7[k].reshape(len(TAPS_7X7) * cd, hd).T)  # [h, (tap, channel)]
    self.b7 = f(net.b7[k][:, None])
    self.win_a0 = f(net.win[k][:, :hd].reshape(2 * hd, 4 * hd).T)  # [4h, (tap x-1 | x, h)]
    self.wh = f(net.wh[k].reshape(3 * hd, 4 * hd).T)  # [4h, (tap x-1 | x | x+1 of row above, h)]
    self.wa, self.ba = f(net.wa[k].T), f(net.ba[k][:, None])
    self.wb, self.bb = f(net.wb[k].T), f(net.bb[k][:, None])
    self.car = f(net.car[k][..., None])  # [cd, cd, h, 1]
    # Once per layer: the state's half of the row LSTM input, zs = bias + input_conv(a1).
    a1 = np.tanh(_conv3x3(s, net.w3s[k], net.b3s[k])).astype(DTYPE).transpose(3, 1, 2, 0)
    both = np.zeros((2 * hd,) + a1.shape[1:], DTYPE)  # [(tap x-1 | x, h), H, W, B]
    both[:hd, :, 1:], both[hd:] = a1[:, :, :-1], a1
    win_a1 = f(net.win[k][:, hd:].reshape(2 * hd, 4 * hd).T)
    zs = (win_a1 @ both.reshape(2 * hd, -1) + f(net.bl[k][:, None])).reshape(
        (4 * hd,) + a1.shape[1:])
    # [H, 4h, W*B]: row r's part is one contiguous block
    self.zs = np.ascontiguousarray(zs.transpose(1, 0, 2, 3).reshape(a1.shape[1], 4 * hd, -1))

  def hidden_rows(self, xpad, rows):
    """Yields h [h, W, B] of the row LSTM for rows 0..rows-1, from the bits in xpad: the
    re-evaluation. Row r reads only the bits of rows <= r, always with the same array shapes."""
    cd, hd, width, batch = self.cd, self.hd, self.width, xpad.shape[-1]
    patches = np.empty((len(_TAPS), cd, width, batch), DTYPE)  # im2col of one row
    both = np.zeros((2 * hd, width, batch), DTYPE)              # a0 at x-1 and at x
    above = np.zeros((3 * hd, width, batch), DTYPE)             # h of row r-1 at x-1, x, x+1
    h = np.zeros((hd, width, batch), DTYPE)
    c = np.zeros_like(h)
    for r in range(rows):
      for t, (ty, tx) in enumerate(_TAPS):
        patches[t] = xpad[:, r + ty, tx:tx + width]
      a0 = np.tanh(self.w7 @ patches.reshape(len(_TAPS) * cd, -1) + self.b7)
      a0 = a0.reshape(hd, width, batch)
      both[:hd, 1:], both[hd:] = a0[:, :-1], a0
      z = self.win_a0 @ both.reshape(2 * hd, -1)
      z += self.zs[r]
      if r:
        above[:hd, 1:], above[hd:2 * hd], above[2 * hd:, :-1] = h[:, :-1], h, h[:, 1:]
        z += self.wh @ above.reshape(3 * hd, -1)
      z = z.reshape(4 * hd, width, batch)
      h, c = spec.lstm_cell(z, c, _sigmoid, np.tanh, lambda v, n: np.split(v, n, axis=0))
      yield h

  def row_hidden(self, xpad, y):
    """h [h, W, B] of row y, re-evaluated from rows 0..y of the (partial) code."""
    for h in self.hidden_rows(xpad, y + 1):
      pass
    return h

  def t0(self, h_pixel):
    return self.wa @ h_pixel + self.ba

  def probs(self, t0, pixel_bits=None, channel=None):
    """P(1) float64 [cd, B] of a pixel's channels, or [B] of one channel of a channel-causal
    model, which also reads the pixel's bits j < channel (pixel_bits [cd, B])."""
    if channel is None:
      pred = np.tanh(self.wb @ np.tanh(t0) + self.bb)
    else:
      t = t0.copy()
      for j in range(channel):
        t += self.car[j, channel] * pixel_bits[j]
      pred = np.tanh(self.wb[channel] @ np.tanh(t) + self.bb[channel])
    pred = np.clip(pred, DTYPE(-PRED_CLIP), DTYPE(PRED_CLIP))
    return (pred.astype(np.float64) + 1.0) / 2.0


def _padded(layer_bits):
  """uint8 {0,1} [B, H, W, cd] -> float32 [cd, H+3, W+6, B]: the bits as +-1, zero padding of
  3 rows above and 3 columns on each side. The decoder starts from all zeros (0 = not decoded
  yet, never read)."""
  batch, height, width, cd = layer_bits.shape
  xpad = np.zeros((cd, height + 3, width + 6, batch), DTYPE)
  xpad[:, 3:, 3:-3] = 2.0 * layer_bits.transpose(3, 1, 2, 0) - 1.0
  return xpad


def _layers(net, depth):
  return net.layers_of(depth, '<codes>')


def naive_probabilities(net, codes):
  """codes uint8 [B, H, W, D] -> P(1) float64 [B, H, W, D] as the naive decoder computes it
  (unquantised): every row once, by the code the decoder's steps run (cost: one decoder step
  of the last row per layer)."""
  codes = np.asarray(codes, dtype=np.uint8)
  batch, height, width, depth = codes.shape
  cd = net.layer_depth
  probs = np.empty((batch, height, width, depth))
  state = _initial_state(net, batch, height, width)
  for k in range(_layers(net, depth)):
    bits = codes[..., k * cd:(k + 1) * cd]
    layer = _Layer(net, k, state[0], width)
    xpad = _padded(bits)
    for y, h in enumerate(layer.hidden_rows(xpad, height)):  # = layer.row_hidden(xpad, y)
      for x in range(width):
        t0 = layer.t0(h[:, x])
        if net.channel_causal:
          for ch in range(cd):
            probs[:, y, x, k * cd + ch] = layer.probs(t0, xpad[:, y + 3, x + 3], ch)
        else:
          probs[:, y, x, k * cd:(k + 1) * cd] = layer.probs(t0).T
    if k + 1 < depth // cd:
      state = _next_state(net, k, 2.0 * bits - 1.0, *state[1:])
  return probs


def naive_encode(net, codes):
  """codes uint8 [B, H, W, D] -> stream bytes, with `naive_probabilities`."""
  codes = np.asarray(codes, dtype=np.uint8)
  cd = net.layer_depth
  probs = quantize(naive_probabilities(net, codes))
  encoder = StreamEncoder()
  for k in range(_layers(net, codes.shape[-1])):
    layer = slice(k * cd, (k + 1) * cd)
    encoder.encode(codes[..., layer].transpose(1, 2, 3, 0).reshape(-1),
                   probs[..., layer].transpose(1, 2, 3, 0).reshape(-1))
  return encoder.finish()


def _initial_state(net, batch, height, width):
  """(s_0, layer_rnn h, c) = 0, float64 [B, H, W, cd or h] as full_forward keeps them."""
  return (np.zeros((batch, height, width, net.layer_depth)),
          np.zeros((batch, height, width, net.hidden_depth)),
          np.zeros((batch, height, width, net.hidden_depth)))


def naive_decode(net, data, shape, max_steps=None):
  """Stream -> codes uint8 [B, H, W, D] (shape), re-evaluating rows 0..y of the layer on the
  partial code at every pixel step (k, y, x).

  `max_steps` stops after that many pixel steps (for timing); undecoded bits stay 0.
  """
  batch, height, width, depth = shape
  cd = net.layer_depth
  codes = np.zeros(shape, dtype=np.uint8)
  decoder = StreamDecoder(data, '<naive stream>')
  state = _initial_state(net, batch, height, width)
  step = 0
  for k in range(_layers(net, depth)):
    layer = _Layer(net, k, state[0], width)
    xpad = np.zeros((cd, height + 3, width + 6, batch), DTYPE)  # as _padded, nothing decoded
    for y in range(height):
      for x in range(width):
        if max_steps is not None and step >= max_steps:
          return codes
        t0 = layer.t0(layer.row_hidden(xpad, y)[:, x])
        pixel = xpad[:, y + 3, x + 3]  # [cd, B], a view: decoded bits go into xpad
        if net.channel_causal:
          for ch in range(cd):
            pixel[ch] = 2.0 * decoder.decode(quantize(layer.probs(t0, pixel, ch))) - 1.0
        else:
          bits = decoder.decode(quantize(layer.probs(t0)).reshape(-1))  # [channel][code]
          pixel[:] = 2.0 * bits.reshape(cd, batch) - 1.0
        codes[:, y, x, k * cd:(k + 1) * cd] = (pixel > 0).T
        step += 1
    if k + 1 < depth // cd:
      state = _next_state(net, k, 2.0 * codes[..., k * cd:(k + 1) * cd] - 1.0, *state[1:])
  decoder.check_consumed()
  return codes
