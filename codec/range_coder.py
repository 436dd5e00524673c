"""Bits + probabilities <-> bytes: constriction's range coder, and nothing about the model.

One stream per chunk. Probabilities are P(bit = 1), already on the engine's 1/2^16 grid, so
constriction's own fixed-point conversion sees exactly the same float64 values on both sides.
The stream is constriction's uint32 words, stored little-endian.
"""
import constriction
import numpy as np

from entropy_coder.errors import UserError, describe

# `perfect=False`: constriction's faster, slightly approximate quantisation of the probability;
# it is deterministic (the same probability always gives the same integer model), which is all a
# coder needs.
_FAMILY = constriction.stream.model.Bernoulli(perfect=False)


class StreamEncoder:

  def __init__(self):
    self._encoder = constriction.stream.queue.RangeEncoder()

  def encode(self, bits, probs):
    """bits int32 {0,1} and P(1) float64, same length, in decoding order."""
    self._encoder.encode(np.ascontiguousarray(bits, dtype=np.int32), _FAMILY,
                         np.ascontiguousarray(probs, dtype=np.float64))

  def finish(self):
    return self._encoder.get_compressed().astype('<u4').tobytes()


class StreamDecoder:

  def __init__(self, data, source):
    self._source = source
    words = np.frombuffer(data, dtype='<u4').astype(np.uint32)
    self._decoder = constriction.stream.queue.RangeDecoder(words)

  def decode(self, probs):
    try:
      return self._decoder.decode(_FAMILY, probs)
    except (AssertionError, ValueError) as e:
      raise UserError(describe(self._source, f'corrupt compressed stream ({e})')) from None

  def check_consumed(self):
    """After the last symbol the stream must be used up: leftovers mean a damaged file."""
    if not self._decoder.maybe_exhausted():
      raise UserError(describe(self._source, 'compressed stream has data left after the last '
                               'bit (damaged file or wrong model)'))
