"""The naive decoder: re-run the whole model (full_forward) for every pixel. The speed baseline.

Without an incremental engine, a decoder that knows only the pixels decoded so far must evaluate
the network on the partial code once per pixel to get that pixel's probabilities: H*W*L full
forward passes per code. It is exact here because every masked tap is simply absent from the
full forward (unknown bits never enter a sum), so the probabilities of pixel (y, x) are the same
bits whatever the undecoded pixels hold. bench/bench_codec.py times it against the engine.
Streams are [layer][y][x][channel][sample], the engine's order, with the engine's quantisation.
"""
import numpy as np

from entropy_coder.codec.engine import PROB_BITS
from entropy_coder.codec.full_forward import full_forward
from entropy_coder.codec.range_coder import StreamDecoder, StreamEncoder

_SCALE = float(1 << PROB_BITS)


def quantize(probs):
  """P(1) -> the coder's grid, as engine._quantize does."""
  q = np.floor(probs * _SCALE + 0.5)
  return np.clip(q, 1.0, _SCALE - 1.0) / _SCALE


def _step_order(height, width, layers):
  return [(k, y, x) for k in range(layers) for y in range(height) for x in range(width)]


def naive_encode(net, codes):
  """codes uint8 [B, H, W, D] -> stream bytes (one full forward: all bits are known)."""
  codes = np.asarray(codes, dtype=np.uint8)
  batch, height, width, depth = codes.shape
  cd = net.layer_depth
  probs = quantize(full_forward(net, codes))
  encoder = StreamEncoder()
  for k in range(depth // cd):
    layer = slice(k * cd, (k + 1) * cd)
    encoder.encode(codes[..., layer].transpose(1, 2, 3, 0).reshape(-1),
                   probs[..., layer].transpose(1, 2, 3, 0).reshape(-1))
  return encoder.finish()


def naive_decode(net, data, shape, max_steps=None):
  """Stream -> codes uint8 [B, H, W, D] (shape), one full forward per pixel step.

  `max_steps` stops after that many pixel steps (for timing); undecoded bits stay 0.
  """
  batch, height, width, depth = shape
  cd = net.layer_depth
  codes = np.zeros(shape, dtype=np.uint8)
  decoder = StreamDecoder(data, '<naive stream>')
  for step, (k, y, x) in enumerate(_step_order(height, width, depth // cd)):
    if max_steps is not None and step >= max_steps:
      return codes
    probs = quantize(full_forward(net, codes)[:, y, x, k * cd:(k + 1) * cd])
    bits = decoder.decode(np.ascontiguousarray(probs.T).reshape(-1))
    codes[:, y, x, k * cd:(k + 1) * cd] = bits.reshape(cd, batch).T
  decoder.check_consumed()
  return codes

