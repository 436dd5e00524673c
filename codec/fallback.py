"""Never worse than simple: per chunk and layer, the model's stream, adaptive counts or raw bits,
whichever makes the chunk smallest (docs/FORMAT.md, version 3).

A model that generalises badly (the codes of a trained image encoder are close to random) can
cost more than the raw bits. The encoder knows every method's cost per layer: the model's from
the quantised probabilities the engine hands to `layer_done` (-log2 of the coded probability of
each true bit, what the range coder spends to ~1e-6), the adaptive coder's by simulating it
(codec/adaptive.py), raw's exactly. `choose` then codes a few candidate assignments for real
and keeps the smallest chunk in bytes (streams, segments and their table bytes), so a chunk is
never bigger than all-raw or all-adaptive of the same codes plus the method field (1-3 bytes):
both are candidates. Ties go to the earlier candidate, all-MODEL first, so files the model codes
well are what they were before version 3, byte for byte.

Decoding needs no model for ADAPTIVE and RAW layers: `decode_known` gives them to the engine as
known layers (ChunkCoder.decode(known=...)), and the model stream holds only the MODEL layers.
"""
import itertools

import numba
import numpy as np

from entropy_coder.codec import adaptive
from entropy_coder.codec import bitstream
from entropy_coder.codec import mixing
from entropy_coder.codec.bitstream import METHOD_ADAPTIVE, METHOD_MODEL, METHOD_RAW
from entropy_coder.codec.range_coder import StreamEncoder
from entropy_coder.errors import UserError, describe

_METHODS = (METHOD_MODEL, METHOD_ADAPTIVE, METHOD_RAW)
# Candidate method sets, in tie order: per layer the cheapest of each set's methods.
CANDIDATE_SETS = tuple(subset for size in (1, 2, 3) for subset in itertools.combinations(_METHODS, size))


@numba.njit(nogil=True, cache=True)
def coded_cost(bits, q):
  """Sum of -log2 of the coded probability of each bit (q: P(1) on the grid, same order)."""
  total = 0.0
  for i in range(bits.size):
    total -= np.log2(q[i] if bits[i] else 1.0 - q[i])
  return total


def layer_blocks(codes, layer_depth, k):
  """codes uint8 [B, H, W, D] -> layer k as adaptive blocks uint8 [B, H*W, cd] (raster order)."""
  batch, height, width, _ = codes.shape
  return codes[..., k * layer_depth:(k + 1) * layer_depth].reshape(batch, height * width, layer_depth)


class LayerCosts:
  """One stream's codes (uint8 [B, H, W, D], the codes that share it): collects the model's
  symbols per layer from layer_done (`model_layer`), then `choose`s the methods.

  mixed: the model stream is version 4's (codec/mixing.py): `model_layer` gets the mixed q
  (uint16) and the stream is the binary range coder's; otherwise constriction's (versions 2, 3)."""

  def __init__(self, codes, layer_depth, fallback=True, mixed=False):
    self.codes = codes
    self.layer_depth = layer_depth
    self.layers = codes.shape[3] // layer_depth
    self.fallback = fallback
    self.mixed = mixed
    self._model = [None] * self.layers       # (bits uint8, q uint16 * 2^-16), coding order
    self.model_bits = np.zeros(self.layers)
    self.model_ideal = np.zeros(self.layers)
    self._adaptive_bits = None

  def model_layer(self, k, bits, q, ideal=0.0, mixed_bits=None):
    """Layer k's symbols in the model stream's order: bits {0,1} and coded P(1) on the grid
    (float64, or, mixed, uint16 * 2^-16 with mixed_bits their cost, which the mixer has summed:
    Mixer.layer_cost); ideal: the model's unquantised code length of the layer (the
    theoretical figure)."""
    if self.mixed:
      self.model_bits[k] = mixed_bits
      self.model_ideal[k] = ideal
      self._model[k] = (np.array(bits, np.uint8), np.ascontiguousarray(q, np.uint16))
      return
    self.model_bits[k] = coded_cost(np.ascontiguousarray(bits), np.ascontiguousarray(q))
    self.model_ideal[k] = ideal
    if self.fallback:
      self._model[k] = (np.asarray(bits, np.uint8), np.rint(np.asarray(q) * bitstream.PROB_ONE).astype(np.uint16))
    else:
      self._model[k] = (np.array(bits, np.int32), np.array(q, np.float64))  # copies: the engine reuses its buffers

  def _model_stream(self, methods):
    if self.mixed:
      layers = [self._model[k] for k, method in enumerate(methods) if method == METHOD_MODEL]
      if not layers:
        return b''
      return mixing.encode_stream(np.concatenate([bits for bits, _ in layers]),
                                  np.concatenate([q for _, q in layers]))
    encoder = StreamEncoder()
    for k, method in enumerate(methods):
      if method == METHOD_MODEL:
        bits, q = self._model[k]
        if q.dtype == np.uint16:
          q = q / float(bitstream.PROB_ONE)
        encoder.encode(bits, q)
    return encoder.finish() if METHOD_MODEL in methods else b''

  def _segments(self, methods):
    """-> (model stream, adaptive segment, raw segment) bytes of this assignment."""
    layers = [k for k, m in enumerate(methods) if m == METHOD_ADAPTIVE]
    adaptive_bytes = adaptive.encode(np.concatenate(
        [layer_blocks(self.codes, self.layer_depth, k) for k in layers])) if layers else b''
    raw = [layer_blocks(self.codes, self.layer_depth, k).reshape(-1)
           for k, m in enumerate(methods) if m == METHOD_RAW]
    raw_bytes = np.packbits(np.concatenate(raw)).tobytes() if raw else b''
    return self._model_stream(methods), adaptive_bytes, raw_bytes

  def choose(self):
    """-> (methods tuple per layer, (model stream, adaptive segment, raw segment))."""
    if not self.fallback:
      methods = (METHOD_MODEL,) * self.layers
      return methods, self._segments(methods)
    self._adaptive_bits = np.array([adaptive.costs(layer_blocks(self.codes, self.layer_depth, k)).sum()
                                    for k in range(self.layers)])
    costs = np.stack([self.model_bits, self._adaptive_bits,
                      np.full(self.layers, float(self.codes[..., :self.layer_depth].size))])
    candidates = []
    for subset in CANDIDATE_SETS:
      allowed = np.array(subset)
      methods = tuple(int(allowed[np.argmin(costs[allowed, k])]) for k in range(self.layers))
      if methods not in candidates:
        candidates.append(methods)
    best = None
    for methods in candidates:
      segments = self._segments(methods)
      size = sum(map(len, segments)) + table_bytes(methods, segments, self.mixed)
      if best is None or size < best[0]:
        best = (size, methods, segments)
    return best[1], best[2]

  def ideal_bits(self, methods):
    """The ideal code length of what `methods` code (after `choose`): ideal_bits. A mixed
    stream's ideal is its coded cost (the mixed q is what it codes)."""
    return ideal_bits(methods, self.model_bits if self.mixed else self.model_ideal,
                      lambda k: layer_blocks(self.codes, self.layer_depth, k))


def ideal_bits(methods, model_ideal, blocks_of):
  """What the payload would cost with ideal streams: per layer the model stream's (MODEL;
  model_ideal[k]: the model's unquantised code length, or version 4's mixed cost), the adaptive
  coder's own (ADAPTIVE), 1 a bit (RAW).
  blocks_of(k): layer k as uint8 [B, H*W, cd]. The payload's excess over it is the coders'
  termination and rounding only (CodingStats.gap)."""
  total = 0.0
  for k, method in enumerate(methods):
    if method == METHOD_MODEL:
      total += model_ideal[k]
    elif method == METHOD_ADAPTIVE:
      total += adaptive.costs(blocks_of(k)).sum()
    else:
      total += blocks_of(k).size
  return total


def table_bytes(methods, segments, mixed=False):
  """The chunk-table bytes that depend on the methods: the method field, segment lengths and
  the model stream's length (bytes when mixed, version 4; words before)."""
  model, adaptive_bytes, raw_bytes = segments
  size = len(bitstream.method_field(methods)) + len(bitstream.varint(len(model) if mixed
                                                                     else len(model) // 4))
  if adaptive_bytes:
    size += len(bitstream.varint(len(adaptive_bytes)))
  if raw_bytes:
    size += len(bitstream.varint(len(raw_bytes)))
  return size


def layers_by_method(chunk, layers):
  """{method: [layer indices]} of a chunk coded in `layers` layers."""
  by_method = {method: [] for method in _METHODS}
  for k in range(layers):
    by_method[chunk.method_of(k)].append(k)
  return by_method


def check_chunk(chunk, layer_depth, source, version):
  """The version-3 and 4 checks that need the model's layer_depth: methods only for layers that
  exist, each stream or segment bounded by what its bytes can hold, the raw segment exact."""
  layers = chunk.depth // layer_depth
  if len(chunk.methods) > layers:
    raise UserError(describe(source, f'corrupt chunk table (methods for {len(chunk.methods)} '
                             f'layers, the code has {layers})'))
  layer_bits = chunk.samples * chunk.height * chunk.width * layer_depth
  count = {m: len(ks) for m, ks in layers_by_method(chunk, layers).items()}
  model_bits, adaptive_bits = count[METHOD_MODEL] * layer_bits, count[METHOD_ADAPTIVE] * layer_bits
  if (bool(model_bits) != bool(chunk.payload_bytes)
      or model_bits > bitstream.max_model_symbols(chunk.payload_bytes, version)
      or adaptive_bits > bitstream.max_adaptive_symbols(chunk.adaptive_bytes)
      or chunk.raw_bytes != -(-count[METHOD_RAW] * layer_bits // 8)):
    raise UserError(describe(source, 'corrupt chunk table (segment lengths do not fit the '
                             'layer methods)'))


def decode_known(chunk, segments, layer_depth, source):
  """A chunk's ADAPTIVE and RAW layers from their segments -> {k: uint8 [B, H, W, cd]}
  (check_chunk first)."""
  _, adaptive_data, raw_data = segments
  layers = chunk.depth // layer_depth
  by_method = layers_by_method(chunk, layers)
  shape = (chunk.samples, chunk.height, chunk.width, layer_depth)
  known = {}
  if by_method[METHOD_ADAPTIVE]:
    ks = by_method[METHOD_ADAPTIVE]
    blocks = adaptive.decode(bytes(adaptive_data), (len(ks) * chunk.samples,
                                                    chunk.height * chunk.width, layer_depth),
                             f'{source} adaptive segment')
    for i, k in enumerate(ks):
      known[k] = blocks[i * chunk.samples:(i + 1) * chunk.samples].reshape(shape)
  if by_method[METHOD_RAW]:
    ks = by_method[METHOD_RAW]
    bits = np.unpackbits(np.frombuffer(bytes(raw_data), np.uint8))
    size = int(np.prod(shape))
    if bits[len(ks) * size:].any():
      raise UserError(describe(source, 'corrupt raw segment (padding bits are not 0)'))
    for i, k in enumerate(ks):
      known[k] = bits[i * size:(i + 1) * size].reshape(shape)
  return known
