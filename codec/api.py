"""compress() and decompress(): lists of binary codes <-> one compressed file, step for step.

    compress                                   decompress
    check codes against the model              parse + check header, sizes, work (bitstream)
    group equal shapes into chunks             check model fingerprint / flags / depths
    per chunk (threads): ChunkCoder.encode     per chunk (threads): ChunkCoder.decode
      (the known bits feed each pixel step)      (each pixel step's bits decoded from the stream)
      layer done: mix (v4), cost the methods     ... and check the stream was used up
    choose methods, range-encode the streams
    CRC32 per chunk, pack the file             CRC32 check per chunk, restore the input order

Both directions make the same per-pixel engine calls (engine.ChunkCoder); see engine.py for
why that matters. Chunks are independent streams, coded in parallel threads (the numba kernels
release the GIL); the chunking depends only on the input, never on the thread count, so the
bytes do not either.

compress_each() and decompress_each() do many files at once (one file per image): one-code
files of equal shape share engine batches, each with its own stream, and every file is what
compress() writes for it alone.
"""
import concurrent.futures
import dataclasses
import math
import os
import threading
import zlib

import numba
import numpy as np

from entropy_coder.codec import bitstream
from entropy_coder.codec import fallback as fallback_
from entropy_coder.codec import mixing
from entropy_coder.codec.engine import ChunkCoder
from entropy_coder.codec.engine_weights import build_network
from entropy_coder.codec.range_coder import StreamDecoder
from entropy_coder.errors import UserError, describe

# At most this many samples share a chunk (one batch of the engine, one range-coder stream) ...
MAX_CHUNK_SAMPLES = 256
# ... and at most this many code bits, which bounds the engine's memory per chunk.
MAX_CHUNK_BITS = 1 << 23
# Groups of at least twice this many codes are split into two or more chunks.
MIN_SPLIT_SAMPLES = 32
# The container version compress writes (bitstream.pack; 1: bitstream.pack_v1, for old readers).
DEFAULT_FORMAT_VERSION = bitstream.VERSION


@dataclasses.dataclass(frozen=True)
class CodingStats:
  """Sizes of one compress or decompress run. `theoretical_bits`: sum of -log2 P(true bit)
  under the model's unquantised probabilities, i.e. the model's ideal code length over every
  layer, whichever method coded it. The code bits each method coded (version 3, codec/fallback.py):
  `model_code_bits` in the model's stream, `adaptive_code_bits` by adaptive counts,
  `raw_code_bits` stored raw."""
  samples: int
  code_bits: int
  theoretical_bits: float
  payload_bytes: int
  file_bytes: int
  model_code_bits: int = 0
  adaptive_code_bits: int = 0
  raw_code_bits: int = 0
  coded_ideal_bits: float = 0.0   # codec/fallback.ideal_bits of the methods used (0: not computed)

  @property
  def fallback_code_bits(self):
    """Code bits not coded by the model (adaptive or raw)."""
    return self.adaptive_code_bits + self.raw_code_bits

  @property
  def bits_per_bit(self):
    return 8.0 * self.file_bytes / self.code_bits if self.code_bits else 0.0

  @property
  def payload_bits_per_bit(self):
    return 8.0 * self.payload_bytes / self.code_bits if self.code_bits else 0.0

  @property
  def theoretical_bits_per_bit(self):
    return self.theoretical_bits / self.code_bits if self.code_bits else 0.0

  @property
  def gap(self):
    """Relative excess of the real payload over the ideal code length of what was coded
    (`coded_ideal_bits`: the model's theoretical bits where every layer is MODEL; the adaptive
    coder's own cost and 1 a bit for fallback layers), i.e. what the coders lose."""
    return 8.0 * self.payload_bytes / self.coded_ideal_bits - 1.0 if self.coded_ideal_bits else 0.0


_NETWORK = [None, None]  # the last (ModelFiles, Network): one model serves many files in a row


def _network(model_files):
  """build_network(model_files), kept for the same ModelFiles object (a frozen dataclass; its
  weights are not to be changed in place): ~3 ms saved per call, which counts for small files."""
  files, net = _NETWORK
  if files is not model_files:
    net = build_network(model_files)
    _NETWORK[:] = [model_files, net]
  return net


def packed_crc(code):
  return zlib.crc32(np.packbits(code.reshape(-1)).tobytes())


def plan_chunks(shapes):
  """Sample shapes -> list of (shape, [sample indices]); depends on the input only.

  Big chunks amortise the per-pixel call overhead over more samples; at least two chunks per
  shape group (from 2 * MIN_SPLIT_SAMPLES codes on) let two cores work on mid-sized inputs.
  """
  groups = {}
  for index, shape in enumerate(shapes):
    groups.setdefault(tuple(shape), []).append(index)
  plan = []
  for shape, indices in groups.items():
    limit = max(1, min(MAX_CHUNK_SAMPLES, MAX_CHUNK_BITS // math.prod(shape)))
    per_chunk = min(limit, max(MIN_SPLIT_SAMPLES, -(-len(indices) // 2)))
    count = -(-len(indices) // per_chunk)
    bounds = [round(i * len(indices) / count) for i in range(count + 1)]
    plan += [(shape, indices[a:b]) for a, b in zip(bounds, bounds[1:])]
  return plan


def _check_code(code, index, net):
  source = f'sample {index}'
  code = np.asarray(code)
  if code.ndim != 3 or min(code.shape) < 1:
    raise UserError(describe(source, f'a code must be a [H, W, D] array, got shape {list(code.shape)}'))
  if max(code.shape[:2]) > bitstream.MAX_DIM or code.shape[2] > bitstream.MAX_DIM:
    raise UserError(describe(source, f'code shape {list(code.shape)} exceeds {bitstream.MAX_DIM}'))
  # Any bool, int or float dtype holding exactly 0 and 1 (a float 0.0 / 1.0 code is common).
  numeric = code.dtype == np.bool_ or np.issubdtype(code.dtype, np.integer) or np.issubdtype(
      code.dtype, np.floating)
  if not numeric or (code.size and not np.isin(code, (0, 1)).all()):
    example = f', values such as {_non_binary_example(code)}' if numeric else ''
    raise UserError(describe(source, f'a code must hold only 0 and 1 (got dtype {code.dtype}'
                             f'{example})'))
  net.layers_of(code.shape[2], source)
  return np.ascontiguousarray(code, dtype=np.uint8)


def _non_binary_example(code):
  """One value of `code` other than 0 and 1, for the error message."""
  flat = code.reshape(-1)
  return flat[np.flatnonzero(~np.isin(flat, (0, 1)))[0]].item()


class _Progress:
  """Thread-safe counter of coded bits that forwards to the user's progress(done, total)."""

  def __init__(self, callback, total):
    self._callback, self._total, self._done = callback, total, 0
    self._lock = threading.Lock()

  def add(self, bits):
    if self._callback is None:
      return
    with self._lock:
      self._done += bits
      self._callback(self._done, self._total)


def _mixer(net, coder, streams=None):
  """The mixing stage (codec/mixing.py) of a ChunkCoder's batch; streams: each code's stream
  (default: one stream for the batch)."""
  batch, height, width = coder.shape
  return mixing.Mixer(batch, height, width, coder.layers, net.layer_depth, net.channel_causal,
                      coder.schedule, streams)


def _encode_chunk(net, codes, progress, with_theory, fallback=True, coder_id=bitstream.CODER_ID,
                  mixed=False):
  """codes uint8 [B, H, W, D] -> ((methods, (model stream, adaptive, raw segments)),
  theoretical bits or 0.0). fallback=False: every layer in the model's stream (version <= 2);
  mixed: the model stream mixes (version 4)."""
  batch, height, width, depth = codes.shape
  cd = net.layer_depth
  costs = fallback_.LayerCosts(codes, cd, fallback, mixed)
  coder = ChunkCoder(net, batch, height, width, depth // cd, coder_id)
  mixer = _mixer(net, coder) if mixed else None

  def layer_done(k, out_p, out_q, layer_bits):
    # The symbols in the decoder's (coding) order, as layer_done hands them.
    q = mixer.pass_layer(k, out_q, layer_bits) if mixer else out_q.reshape(-1)
    costs.model_layer(k, layer_bits, q, _code_length(layer_bits, out_p) if with_theory else 0.0,
                      mixer.layer_cost(0, k) if mixer else None)
    progress.add(layer_bits.size)

  decoded = coder.encode(codes, layer_done)
  if not np.array_equal(decoded, codes):  # the engine must rebuild exactly what it was fed
    raise AssertionError('engine did not reproduce the input codes')
  return _chosen(costs, with_theory)


def _chosen(costs, with_theory):
  """A stream's LayerCosts -> ((methods, segments), (theoretical bits, coded ideal bits)), the
  figures 0.0 without theory."""
  methods, segments = costs.choose()
  figures = (sum(costs.model_ideal), costs.ideal_bits(methods)) if with_theory else (0.0, 0.0)
  return (methods, segments), figures


@numba.njit(nogil=True, cache=True)
def _code_length(bits, p_model):
  """Sum of -log2 P(true bit) under the model's unquantised probabilities (same flat order)."""
  p = p_model.reshape(bits.size)
  total = 0.0
  for i in range(bits.size):
    total -= math.log2(p[i] if bits[i] else 1.0 - p[i])
  return total


def _corrupt_stream(source):
  return UserError(describe(source, 'corrupt compressed stream (it does not decode into exactly '
                            'its own length; damaged file or wrong model)'))


def _decode_chunk(net, chunk, segments, source, progress, with_theory, coder_id,
                  version=bitstream.VERSION):
  """One chunk's stream and segments -> (codes uint8 [B, H, W, D], theoretical bits or 0.0)."""
  cd = net.layer_depth
  known = fallback_.decode_known(chunk, segments, cd, source)
  layers = chunk.depth // cd
  if len(known) == layers and not with_theory:  # nothing left for the model
    progress.add(chunk.code_bits)
    return np.concatenate([known[k] for k in range(layers)], axis=3), (0.0, 0.0)
  coder = ChunkCoder(net, chunk.samples, chunk.height, chunk.width, layers, coder_id)
  mixer = _mixer(net, coder) if version >= bitstream.MIXED_VERSION else None
  stream = None
  if mixer:
    mixer.start_decoding([segments[0]])
    decode_bits = mixer.decode
  else:
    stream = StreamDecoder(segments[0], source)
    decode_bits = stream.decode
  row_bits = chunk.width * cd * chunk.samples
  theory = np.zeros(layers)

  def row_done(k, y):
    progress.add(row_bits)

  def layer_done(k, out_p, out_q, layer_bits):
    if mixer and k in known:  # the mixer sees every layer, whichever method coded it
      mixer.pass_layer(k, out_q, layer_bits)
    if with_theory:
      theory[k] = _code_length(layer_bits, out_p)

  codes = coder.decode(decode_bits, layer_done, row_done, known)
  if chunk.payload_bytes:
    if mixer and not mixer.used_exactly(0):
      raise _corrupt_stream(source)
    if stream:
      stream.check_consumed()
  if not with_theory:
    return codes, (0.0, 0.0)
  stream_ideal = [mixer.layer_cost(0, k) for k in range(layers)] if mixer else theory
  coded = fallback_.ideal_bits([chunk.method_of(k) for k in range(layers)], stream_ideal,
                               lambda k: fallback_.layer_blocks(codes, cd, k))
  return codes, (sum(theory), coded)


def _run_parallel(jobs, threads):
  """Runs zero-argument callables, at most `threads` at a time; results in job order."""
  threads = max(1, min(threads or os.cpu_count() or 1, len(jobs)))
  if threads == 1:
    return [job() for job in jobs]
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    return [future.result() for future in [pool.submit(job) for job in jobs]]


def _format_version(format_version):
  format_version = format_version or DEFAULT_FORMAT_VERSION
  if format_version not in bitstream.READ_VERSIONS:
    raise ValueError(f'format_version must be one of {bitstream.READ_VERSIONS}')
  return format_version


def compress_with_stats(codes, model_files, progress=None, source_format=bitstream.SOURCE_API,
                        source_layer_depth=0, threads=None, theory=True, format_version=None):
  """list of uint8 [H, W, D] codes -> (compressed bytes, CodingStats).

  theory=False skips the theoretical code length (stats.theoretical_bits = 0), ~5% faster.
  source_layer_depth: the input .npz's layer_depth (source_format SOURCE_NPZ), restored by
  decompress. format_version: the container to write (default DEFAULT_FORMAT_VERSION; 1 is the
  layout before version 2, for readers that predate it); the streams are the same in both.
  """
  format_version = _format_version(format_version)
  net = _network(model_files)
  checked = [_check_code(code, index, net) for index, code in enumerate(codes)]
  plan = plan_chunks([code.shape for code in checked])
  counter = _Progress(progress, sum(code.size for code in checked))

  def job(indices):
    batch = np.stack([checked[i] for i in indices])
    coded, ideal = _encode_chunk(net, batch, counter, theory, format_version >= 3,
                                 bitstream.coder_written(format_version),
                                 format_version >= bitstream.MIXED_VERSION)
    return coded, ideal, bitstream.packed_bits(batch) if format_version != 1 else b''

  results = _run_parallel([lambda indices=indices: job(indices) for _, indices in plan], threads)
  return _pack(net, checked, plan, results, source_format, source_layer_depth, format_version)


def _pack(net, checked, plan, results, source_format, source_layer_depth, format_version):
  """Coded chunks -> (file bytes, CodingStats). results: per chunk of the plan, ((methods,
  (model stream, adaptive segment, raw segment)), theoretical bits, packed bits of its codes:
  bitstream.packed_bits, unused by version 1)."""
  chunks, sample_index, payloads = [], [], []
  method_bits = [0, 0, 0]
  for (shape, indices), ((methods, (model, adaptive, raw)), _, _) in zip(plan, results):
    stored = methods if any(methods) else ()
    chunks.append(bitstream.Chunk(*shape, len(indices), len(model), stored, len(adaptive),
                                  len(raw)))
    sample_index += indices
    payloads.append(model + adaptive + raw)
    for method in methods:
      method_bits[method] += len(indices) * shape[0] * shape[1] * net.layer_depth
  fields = dict(coder_id=bitstream.coder_written(format_version), channel_causal=net.channel_causal,
                source_format=source_format, fingerprint=net.fingerprint)
  if format_version == 1:
    data = bitstream.pack_v1(dict(fields, layer_depth=net.layer_depth,
                                  source_layer_depth=source_layer_depth),
                             chunks, sample_index, [packed_crc(checked[i]) for i in sample_index],
                             payloads)
  else:
    # Stored only when it says something: a .npz whose layer_depth is not the model's.
    stored = (source_layer_depth if source_format == bitstream.SOURCE_NPZ
              and source_layer_depth not in (0, net.layer_depth) else 0)
    data = bitstream.pack(dict(fields, source_layer_depth=stored), chunks, sample_index,
                          [bits for _, _, bits in results], payloads, format_version)
  stats = CodingStats(samples=len(checked), code_bits=sum(code.size for code in checked),
                      theoretical_bits=sum(ideal for _, (ideal, _), _ in results),
                      payload_bytes=sum(len(payload) for payload in payloads), file_bytes=len(data),
                      coded_ideal_bits=sum(coded for _, (_, coded), _ in results),
                      **_method_stats(method_bits))
  return data, stats


def _method_stats(method_bits):
  """[model, adaptive, raw] code bits -> the CodingStats fields."""
  model, adaptive, raw = method_bits
  return dict(model_code_bits=model, adaptive_code_bits=adaptive, raw_code_bits=raw)


def _header_method_bits(header, layer_depth):
  """The code bits each method codes in a parsed file -> [model, adaptive, raw]."""
  method_bits = [0, 0, 0]
  for chunk in header.chunks:
    layers = chunk.depth // layer_depth
    for k in range(layers):
      method_bits[chunk.method_of(k)] += chunk.code_bits // layers
  return method_bits


def compress(codes, model_files, progress=None, **options):
  """list of uint8 [H, W, D] {0,1} codes -> bytes. progress(done_bits, total_bits) if given."""
  return compress_with_stats(codes, model_files, progress, theory=False, **options)[0]


def read_header(data, source='<data>'):
  """Checks a compressed file without decoding it -> bitstream.Header."""
  return bitstream.parse(bytes(data), source)


def check_model(header, model_files, source='<data>'):
  """The checks of a header against the model, before any decoding: the model it names (its
  fingerprint), the channel-causal flag (and version 1's layer_depth), and every chunk's depth
  (whole layers, no more than the model codes). UserError naming `source`; -> the Network."""
  net = _network(model_files)
  if not header.model_matches(net.fingerprint):
    shown = min(12, len(header.fingerprint))
    raise UserError(describe(source, f'was compressed with a different model (fingerprint '
                             f'{header.fingerprint[:shown]}…, this model is {net.fingerprint[:shown]}…); '
                             'decode it with the model that encoded it'))
  if ((header.layer_depth and header.layer_depth != net.layer_depth)
      or header.channel_causal != net.channel_causal):
    raise UserError(describe(source, 'header layer_depth / channel_causal do not match the model'))
  for chunk in header.chunks:
    net.layers_of(chunk.depth, source)
    if header.version >= 3:
      fallback_.check_chunk(chunk, net.layer_depth, source, header.version)
  return net


def decompress_with_stats(data, model_files, progress=None, source='<data>', threads=None,
                          theory=True):
  """bytes -> (list of uint8 [H, W, D] codes in the original order, CodingStats, Header).

  theory=False skips the theoretical code length (stats.theoretical_bits = 0), ~4% faster.
  """
  data = bytes(data)
  header = bitstream.parse(data, source)
  net = check_model(header, model_files, source)
  # bitstream.parse has bounded every chunk's code bits by what its stream can hold
  # (max_code_bits), so the work and the engine's buffers below are linear in the file's size.
  counter = _Progress(progress, header.code_bits)
  payloads = list(bitstream.chunk_segments(data, header))
  jobs = [lambda chunk=chunk, payload=payload, i=i:
          _decode_chunk(net, chunk, payload, f'{source} chunk {i}', counter, theory,
                        header.coder_id, header.version)
          for i, (chunk, payload) in enumerate(zip(header.chunks, payloads))]
  results = _run_parallel(jobs, threads)
  bitstream.verify_decoded(header, [chunk_codes for chunk_codes, _ in results], source)
  codes = [None] * header.sample_count
  position = 0
  for chunk_codes, _ in results:
    for code in chunk_codes:
      codes[header.sample_index[position]] = code
      position += 1
  stats = CodingStats(samples=header.sample_count, code_bits=sum(code.size for code in codes),
                      theoretical_bits=sum(ideal for _, (ideal, _) in results),
                      payload_bytes=header.payload_size, file_bytes=len(data),
                      coded_ideal_bits=sum(coded for _, (_, coded) in results),
                      **_method_stats(_header_method_bits(header, net.layer_depth)))
  return codes, stats, header


def decompress(data, model_files, progress=None, **options):
  """bytes -> list of uint8 [H, W, D] codes, exactly those given to compress()."""
  return decompress_with_stats(data, model_files, progress, theory=False, **options)[0]


# ---- many files, one code each: one engine batch, a stream per file --------------------------------
#
# A user with thousands of images compresses them one file per image. Coded one at a time, a
# small code pays the engine's per-pixel-step cost for a batch of one; coded B at a time in one
# engine batch (`ChunkCoder` with B codes), each code still gets its own stream, with exactly
# the symbols and probabilities it gets alone: the engine's values for one code of a batch do
# not depend on the others (SIMD lanes hold one code each; engine.py, docs/FORMAT.md), so every
# file is byte for byte what compress_with_stats writes for that code alone (tested).

# Inputs looked at together: one-code files of one shape among them share engine batches.
EACH_WINDOW = 4 * MAX_CHUNK_SAMPLES


def _encode_separately(net, codes, with_theory, fallback=True, coder_id=bitstream.CODER_ID,
                       mixed=False):
  """codes uint8 [B, H, W, D] -> per code ((methods, segments), theoretical bits): what
  _encode_chunk writes for that code alone."""
  batch, height, width, depth = codes.shape
  costs = [fallback_.LayerCosts(codes[b:b + 1], net.layer_depth, fallback, mixed)
           for b in range(batch)]
  coder = ChunkCoder(net, batch, height, width, depth // net.layer_depth, coder_id)
  mixer = _mixer(net, coder, np.arange(batch)) if mixed else None  # a stream per code

  def layer_done(k, out_p, out_q, layer_bits):
    # [H*W, cd, B] in coding order: column b is code b's symbols in its own stream's order.
    coded_q = mixer.pass_layer(k, out_q, layer_bits) if mixer else out_q
    bits, q, p = (a.reshape(-1, batch) for a in (layer_bits, coded_q, out_p))
    for b, cost in enumerate(costs):
      column = np.ascontiguousarray(bits[:, b])
      cost.model_layer(k, column, np.ascontiguousarray(q[:, b]),
                       _code_length(column, np.ascontiguousarray(p[:, b])) if with_theory else 0.0,
                       mixer.layer_cost(b, k) if mixer else None)

  decoded = coder.encode(codes, layer_done)
  if not np.array_equal(decoded, codes):  # the engine must rebuild exactly what it was fed
    raise AssertionError('engine did not reproduce the input codes')
  return [_chosen(cost, with_theory) for cost in costs]


def _decode_separately(net, chunk_shape, payloads, sources, with_theory,
                       version=bitstream.VERSION):
  """One-code files of one shape and version, each its own stream, decoded in one engine batch
  -> (codes uint8 [B, H, W, D], per code (theoretical bits, coded ideal bits): what
  _decode_chunk gives it alone, 0.0 without theory). UserError naming the file whose stream
  fails."""
  batch = len(payloads)
  height, width, depth = chunk_shape
  coder = ChunkCoder(net, batch, height, width, depth // net.layer_depth)
  if version >= bitstream.MIXED_VERSION:
    mixer = _mixer(net, coder, np.arange(batch))
    mixer.start_decoding(payloads)
    return _decode_mixed_separately(coder, mixer, sources, with_theory)
  decoders = [StreamDecoder(payload, source) for payload, source in zip(payloads, sources)]
  theory = [0.0] * batch

  decode = [decoder.decode for decoder in decoders]

  def decode_bits(probs):
    # [channel][sample] (one channel of all samples in channel-causal mode): a column per code.
    by_code = probs.reshape(-1, batch).T.copy()
    bits = np.empty(by_code.shape, np.int32)
    for b in range(batch):
      bits[b] = decode[b](by_code[b])
    return bits.T.reshape(-1)

  layer_done = _theory_columns(theory, batch) if with_theory else (lambda *_: None)
  codes = coder.decode(decode_bits, layer_done)
  for decoder in decoders:
    decoder.check_consumed()
  return codes, [(bits, bits) for bits in theory]  # the model's own stream: its ideal is theory


def _theory_columns(theory, batch):
  """layer_done that adds each code's (column's) theoretical bits to theory[b]."""
  def layer_done(k, out_p, out_q, layer_bits):
    columns, p = layer_bits.reshape(-1, batch), out_p.reshape(-1, batch)
    for b in range(batch):
      theory[b] += _code_length(np.ascontiguousarray(columns[:, b]), np.ascontiguousarray(p[:, b]))
  return layer_done


def _decode_mixed_separately(coder, mixer, sources, with_theory):
  """_decode_separately of version-4 files: one mixer, a stream per code."""
  batch = len(sources)
  theory = [0.0] * batch
  layer_done = _theory_columns(theory, batch) if with_theory else (lambda *_: None)
  codes = coder.decode(mixer.decode, layer_done)
  for b, source in enumerate(sources):
    if not mixer.used_exactly(b):
      raise _corrupt_stream(source)
  coded = [sum(mixer.layer_cost(b, k) for k in range(coder.layers)) if with_theory else 0.0
           for b in range(batch)]
  return codes, list(zip(theory, coded))


class _Failed:
  """An input's UserError, raised when its turn comes (the inputs before it are yielded)."""

  def __init__(self, error):
    self.error = error


def _in_windows(items, is_single):
  """Consecutive runs of up to EACH_WINDOW items for which is_single(item); other items alone."""
  window = []
  for item in items:
    if is_single(item):
      window.append(item)
      if len(window) == EACH_WINDOW:
        yield window, True
        window = []
    else:
      if window:
        yield window, True
        window = []
      yield [item], False
  if window:
    yield window, True


def compress_each(inputs, model_files, threads=None, theory=True, format_version=None):
  """Many files at once: inputs, an iterable of (codes, source_format, source_layer_depth), one
  file each. Yields (file bytes, CodingStats) per input, in order: each exactly what
  compress_with_stats(codes, source_format=..., source_layer_depth=...) gives on its own.
  One-code inputs of equal shape are coded in shared engine batches (a stream each), several
  times faster per code than one at a time; others are coded as compress_with_stats does."""
  format_version = _format_version(format_version)
  net = _network(model_files)

  def single(item):
    return len(item[0]) == 1

  for window, batched in _in_windows(inputs, single):
    if not batched:
      codes, source_format, layer_depth = window[0]
      yield compress_with_stats(codes, model_files, source_format=source_format,
                                source_layer_depth=layer_depth, threads=threads, theory=theory,
                                format_version=format_version)
      continue
    checked = []
    for i, (codes, _, _) in enumerate(window):
      try:
        checked.append(_check_code(codes[0], 0, net))
      except UserError as e:
        checked.append(_Failed(e))
    good = [i for i, code in enumerate(checked) if not isinstance(code, _Failed)]
    plan = plan_chunks([checked[i].shape for i in good])
    jobs = [lambda members=[good[j] for j in indices]: (
                members, _encode_separately(net, np.stack([checked[i] for i in members]), theory,
                                            format_version >= 3,
                                            bitstream.coder_written(format_version),
                                            format_version >= bitstream.MIXED_VERSION))
            for _, indices in plan]
    coded = {}
    for members, results in _run_parallel(jobs, threads):
      coded.update(zip(members, results))
    for i, (_, source_format, layer_depth) in enumerate(window):
      if isinstance(checked[i], _Failed):
        raise checked[i].error
      code = checked[i]
      payload, ideal = coded[i]
      bits = bitstream.packed_bits(code[None]) if format_version != 1 else b''
      yield _pack(net, [code], [(code.shape, [0])], [(payload, ideal, bits)], source_format,
                  layer_depth, format_version)


def decompress_each(items, model_files, threads=None, theory=True):
  """Many files at once: items, an iterable of (file bytes, source name). Yields (codes,
  CodingStats, Header) per file, in order, each exactly what decompress_with_stats gives on its
  own; a file's UserError is raised in its turn, after the files before it. One-code files of
  equal shape are decoded in shared engine batches, each from its own stream."""

  def single(item):
    data, source = item
    try:
      header = bitstream.parse(bytes(data), source)
    except UserError:
      return False  # decompress_with_stats raises it in its turn
    # A file with layers coded outside the model decodes alone (its known layers are its own).
    return (header.sample_count == 1 and not any(header.chunks[0].methods)
            and header.coder_id == bitstream.CODER_ID)  # _decode_separately: coder CODER_ID

  net = _network(model_files)
  for window, batched in _in_windows(items, single):
    if not batched:
      data, source = window[0]
      yield decompress_with_stats(data, model_files, source=source, threads=threads, theory=theory)
      continue
    prepared = []  # per file: (data, header) or _Failed
    for data, source in window:
      data = bytes(data)
      try:
        header = bitstream.parse(data, source)
        check_model(header, model_files, source)
        prepared.append((data, header))
      except UserError as e:
        prepared.append(_Failed(e))
    good = [i for i, item in enumerate(prepared) if not isinstance(item, _Failed)]
    decoded = {}

    def job(members):
      headers = [prepared[i][1] for i in members]
      try:
        codes, figures = _decode_separately(
            net, _chunk_shape(headers[0]),
            [next(bitstream.chunk_payloads(prepared[i][0], prepared[i][1])) for i in members],
            [f'{window[i][1]} chunk 0' for i in members], theory, headers[0].version)
      except UserError:
        return None  # one damaged stream: the files are decoded alone, in turn, to name it
      return [(i, codes[b:b + 1], figure) for b, (i, figure) in enumerate(zip(members, figures))]

    # A batch holds one kind of model stream: the files of each version are planned apart.
    jobs = []
    for version in sorted({prepared[i][1].version for i in good}):
      same = [i for i in good if prepared[i][1].version == version]
      jobs += [lambda members=[same[j] for j in indices]: (members, job(members))
               for _, indices in plan_chunks([_chunk_shape(prepared[i][1]) for i in same])]
    for members, result in _run_parallel(jobs, threads):
      for i, chunk_codes, figure in result or []:
        decoded[i] = (chunk_codes, figure)
    for i, (data, source) in enumerate(window):
      if isinstance(prepared[i], _Failed):
        raise prepared[i].error
      if i not in decoded:
        yield decompress_with_stats(data, model_files, source=source, threads=1, theory=theory)
        continue
      header = prepared[i][1]
      chunk_codes, (ideal, coded) = decoded[i]
      bitstream.verify_decoded(header, [chunk_codes], source)
      code = chunk_codes[0]
      yield [code], CodingStats(samples=1, code_bits=code.size, theoretical_bits=ideal,
                                payload_bytes=header.payload_size, file_bytes=len(data),
                                model_code_bits=code.size, coded_ideal_bits=coded), header


def _chunk_shape(header):
  chunk = header.chunks[0]
  return (chunk.height, chunk.width, chunk.depth)


def warm_up(model_files):
  """Codes one tiny code both ways, so numba compiles (first run, ~20-40 s) or loads its cache
  before real work starts; the CLI shows a notice meanwhile."""
  net = _network(model_files)
  tiny = [np.zeros((2, 2, net.layer_depth), np.uint8)]
  decompress(compress(tiny, model_files, threads=1), model_files, threads=1)
