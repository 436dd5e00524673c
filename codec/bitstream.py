"""The compressed file container (docs/FORMAT.md): version 4 written, versions 1 to 4 read.

Versions 3 and 4 (little-endian; varint = unsigned LEB128, shortest form):

    magic '\\x89NEC' 4s  version B (= 4 or 3)  coder_id B  flags B  model fingerprint, first 4 bytes 4s
    [source_layer_depth varint]           only with FLAG_SOURCE_LAYER_DEPTH
    [chunk_count varint]                  absent with FLAG_ONE_CODE (one chunk of one code)
    chunk table   per chunk: height, width, depth, [samples: absent with FLAG_ONE_CODE],
                  [methods, only with FLAG_METHODS]: a varint n and n bytes, 2 bits per layer (layer k: byte k // 4, bits
                    2 (k % 4)..; METHOD_MODEL 0, METHOD_ADAPTIVE 1, METHOD_RAW 2; layers past
                    4 n are MODEL; n = 0: all MODEL; the last byte is not 0; without
                    FLAG_METHODS, the usual case, every layer of every chunk is MODEL),
                  [adaptive_bytes varint: only if a layer is ADAPTIVE],
                  [raw_bytes varint: only if a layer is RAW],
                  payload_size (the model stream's length: version 4 in bytes, version 3 in
                  4-byte words; 0 iff no MODEL layer), varints
    [sample order] per coded sample its index in the input, varints; only with FLAG_SAMPLE_ORDER
    chunk CRCs    per chunk u32: the running CRC32 of (everything above) + np.packbits of the
                  chunks' [samples, H, W, D] codes, chunks 0..i in order
    header_check  u8: CRC-8/SMBUS (polynomial 0x07, `crc8`) of everything above
    payload       per chunk: its model stream (version 4: codec/mixing.py's, the model's probability
                  mixed with the code's own context statistics; version 3: constriction's of
                  the model's probability), its adaptive segment (codec/adaptive.py), its raw
                  segment (np.packbits of the RAW layers' bits, [layer][sample][y][x][channel]),
                  chunk after chunk

Version 2 is version 3 without FLAG_METHODS (every layer MODEL); `pack` still writes versions 2
and 3 (version=2, 3). One code the model codes costs 21 bytes beside its stream (a 22x48x16
code; at most 24 while height and width are below 16384, depth below 128 and the stream below
2 MB). Everything is checked before any decoding starts: magic, version, the header check,
coder, exact file length, table consistency and a bound on the work (`max_model_symbols`,
`max_adaptive_symbols`: code bits per payload bit), so a damaged or hostile
file gives one clear UserError and never a hang or an absurd allocation: decoding a file of N
bytes costs work and memory proportional to N. After decoding, each chunk's CRC32 (which covers
the header, the shapes and the bits) stands between a damaged file or another decoder and a
wrong code: `verify_decoded`.

Version 1 (72-byte fixed header, 32-byte fingerprint, a CRC32 per code, of the header and of the
payload) is read by `_parse_v1`; `pack_v1` still writes it, for tests and old readers.
"""
import dataclasses
import math
import struct
import zlib

import numpy as np

from entropy_coder import leb128
from entropy_coder.errors import UserError, describe

MAGIC = b'\x89NEC'               # 'NEC' = neural entropy coder; \x89 catches 7-bit transfers
VERSION = 4
READ_VERSIONS = (1, 2, 3, 4)
# The first version whose model stream is codec/mixing.py's (binary range coder, its length in
# bytes); versions 2 and 3 hold constriction's stream, its length in 4-byte words.
MIXED_VERSION = 4
# The versions of this module's layout (`pack`, `_parse_v2`); version 1 has its own.
LAYOUT_VERSIONS = (2, 3, 4)
# coder 1: constriction 0.5 queue RangeEncoder, Bernoulli(perfect=False), P(1) rounded to
# q/2^16 (q in [1, 65535]) from the float32 incremental engine with deterministic exp (arith.py),
# a layer's symbols in raster order (codec/schedule.py `raster`).
# coder 2: the same, the symbols in wavefront order (codec/schedule.py `wavefront`).
CODER_RASTER = 1
CODER_WAVEFRONT = 2
CODER_ID = CODER_WAVEFRONT        # what new files are written with (version 1: CODER_RASTER)
READ_CODERS = (CODER_RASTER, CODER_WAVEFRONT)


def coder_written(version):
  """The coder a file of this container version is written with: version 1 is for old readers,
  which know coder 1 only."""
  return CODER_RASTER if version == 1 else CODER_ID


FLAG_CHANNEL_CAUSAL = 0x01
FLAG_SAMPLE_ORDER = 0x02
SOURCE_SHIFT = 2                 # flags bits 2-3: source_format
SOURCE_MASK = 0x0C
FLAG_SOURCE_LAYER_DEPTH = 0x10   # v2: the input .npz's layer_depth is stored (it differs from the model's)
FLAG_ONE_CODE = 0x20             # v2: one chunk of one code; no chunk count, no sample count
FLAG_METHODS = 0x40              # v3: the chunk table has per-layer methods (some layer is not MODEL)
_KNOWN_FLAGS = {2: 0x3F, 3: 0x7F, 4: 0x7F}

# Version 3: how each layer of a chunk is coded (codec/fallback.py picks, per chunk and layer).
METHOD_MODEL = 0      # the model's range-coder stream
METHOD_ADAPTIVE = 1   # Krichevsky-Trofimov counts per channel (codec/adaptive.py)
METHOD_RAW = 2        # the bits as they are, packed
METHOD_NAMES = ('model', 'adaptive', 'raw')

SOURCE_API = 0
SOURCE_NPZ = 1
SOURCE_TFRECORD = 2
SOURCE_TFRECORD_GZIP = 3
SOURCE_NAMES = {SOURCE_API: 'api', SOURCE_NPZ: 'npz', SOURCE_TFRECORD: 'tfrecord',
                SOURCE_TFRECORD_GZIP: 'tfrecord-gzip'}

HEAD = struct.Struct('<4sBBB4s')          # v2: magic, version, coder_id, flags, fingerprint prefix
FINGERPRINT_BYTES = 4
CHUNK_CRC = struct.Struct('<I')
HEADER_CHECK = struct.Struct('<B')
_MAX_VARINT_BYTES = 10                    # 64 bits

# Version 1 (read, and written by pack_v1 only).
V1_MAGIC = b'\x89NEC\r\n\x1a\n'           # \r\n, \x1a catch text-mode mangling
V1_FIXED_HEADER = struct.Struct('<8sHBBHHB3xIIIQ32s')
V1_CHUNK_ENTRY = struct.Struct('<IIIIQ')
V1_SAMPLE_ENTRY = struct.Struct('<I')
V1_CRC = struct.Struct('<I')
V1_PAYLOAD_CRC_OFFSET = 28
_V1_KNOWN_FLAGS = FLAG_CHANNEL_CAUSAL | FLAG_SAMPLE_ORDER

# Limits that no real file reaches; they stop a damaged or hostile header from asking for
# absurd memory or time.
MAX_DIM = 1 << 16
MAX_SAMPLES = 1 << 26

# The most probable a coded symbol (bit value) can be under coder 1: P(1) = q / 2^16 with q in
# [33, 65503], so P(either value) <= 65503 / 2^16. The model clips pred to +-0.999 in float32
# (codec/engine_weights.py PRED_CLIP) and the engine rounds P(1) = (pred + 1) / 2 to the grid
# (engine._quantize): float32(0.999) = 0.99900001287..., P = 0.99950000643..., q = round(P * 2^16)
# = round(65503.23) = 65503; the other end gives round(32.77) = 33 = 2^16 - 65503.
# test_work_bound_assumes_the_engines_clip checks this against the engine.
PROB_ONE = 1 << 16
MAX_SYMBOL_Q = 65503
MAX_SYMBOL_PROBABILITY = MAX_SYMBOL_Q / PROB_ONE
# Bits of slack per stream on top of the derivation below (which needs none): two 32-bit words.
STREAM_SLACK_BITS = 64
# 1 / -log2(65503 / 65536) = 1376.20...: see max_code_bits.
MAX_CODE_BITS_PER_PAYLOAD_BIT = -1.0 / math.log2(MAX_SYMBOL_PROBABILITY)


def max_code_bits(payload_bytes):
  """The most code bits (coded symbols) a chunk stream of `payload_bytes` can hold:
  floor((8 * payload_bytes + STREAM_SLACK_BITS) / -log2(65503 / 65536)), ~1,376 per payload bit.

  Derivation (constriction 0.5 `RangeEncoder`: 64-bit state, 32-bit words, 24-bit probabilities).
  * The coder's probabilities never exceed the grid's: `Bernoulli(perfect=False)` turns
    P(1) = p = q / 2^16 into the integers P0 = floor((1 - p) * (2^24 - 2)) + 1 and P1 = 2^24 - P0
    out of 2^24 (exact in float64): P1 = 256 q and P0 = 256 (2^16 - q), except for q < 2^15 where
    P1 is one more and P0 one less. For q in [33, 65503] every symbol thus has an integer
    probability P <= 256 * 65503, i.e. P / 2^24 <= p_max = MAX_SYMBOL_PROBABILITY.
  * Encoding a symbol sets range' = floor(range / 2^24) * P <= range * p_max: the range shrinks by
    at least -log2(p_max) = 0.000726638 bits (c) per symbol (the floor only shrinks it more).
  * The range starts below 2^64 and is kept >= 2^32: whenever it drops below 2^32 it is
    multiplied by 2^32 and exactly one word goes to the stream (possibly held back by carry
    handling, always written by the end). After n symbols and R such words,
    2^32 <= range < 2^64 * 2^-(c n) * 2^(32 R), so c n < 32 (R + 1).
  * Sealing the stream adds one or two words (none only if nothing was coded), so the stream has
    W >= R + 1 words: n < 32 W / c = payload bits / c. The bound adds STREAM_SLACK_BITS to that.
  Any stream the encoder writes satisfies it (test_work_bound_holds_for_the_cheapest_streams...
  codes the cheapest possible symbols and reaches ~90% of it), so a chunk table declaring more is
  damaged or hostile, and the decoder, whose work and memory are linear in the declared code bits,
  never does more than a fixed multiple of what the file could really hold.
  """
  return math.floor((8 * payload_bytes + STREAM_SLACK_BITS) * MAX_CODE_BITS_PER_PAYLOAD_BIT)


# The adaptive coder (codec/adaptive.py) shrinks its range by at least this factor per symbol:
# bound = floor(range * q0 / 2^16) with q in [2^16 - MAX_SYMBOL_Q, MAX_SYMBOL_Q] leaves
# range' <= range * MAX_SYMBOL_PROBABILITY (bit 0) or < range * (1 - q0 / 2^16) + 1
# <= range * (MAX_SYMBOL_PROBABILITY + 2^-24) (bit 1, as range >= 2^24).
ADAPTIVE_SHRINK_BITS = -math.log2(MAX_SYMBOL_PROBABILITY + 2.0 ** -24)


def max_adaptive_symbols(segment_bytes):
  """The most symbols an adaptive segment of `segment_bytes` can hold: floor(8 S / c) with
  c = ADAPTIVE_SHRINK_BITS. The range starts below 2^32, stays >= 2^24 and gains 8 bits per
  renormalisation, each of which stores one byte: after n symbols and R of them,
  2^24 <= 2^32 2^(-c n) 2^(8 R), so c n <= 8 (R + 1) < 8 S (S = R + 4 stored bytes)."""
  return math.floor(8 * segment_bytes / ADAPTIVE_SHRINK_BITS)


def method_field(methods):
  """Per-layer methods -> the version-3 table bytes: varint n, n bytes of 2 bits per layer,
  trailing MODEL layers left out (all MODEL: one byte, 0)."""
  methods = list(methods)
  while methods and methods[-1] == METHOD_MODEL:
    methods.pop()
  packed = bytearray(-(-len(methods) // 4))
  for k, method in enumerate(methods):
    packed[k // 4] |= method << (2 * (k % 4))
  return varint(len(packed)) + bytes(packed)


@dataclasses.dataclass(frozen=True)
class Chunk:
  height: int
  width: int
  depth: int
  samples: int
  payload_bytes: int            # the model stream's (v1, v2: the chunk's only stream)
  methods: tuple = ()           # v3: per layer, as stored (layers past the end are MODEL)
  adaptive_bytes: int = 0       # v3: the adaptive segment's length
  raw_bytes: int = 0            # v3: the raw segment's length

  @property
  def code_bits(self):
    return self.samples * self.height * self.width * self.depth

  @property
  def total_bytes(self):
    """The chunk's share of the payload: model stream, adaptive and raw segments."""
    return self.payload_bytes + self.adaptive_bytes + self.raw_bytes

  def method_of(self, k):
    return self.methods[k] if k < len(self.methods) else METHOD_MODEL


@dataclasses.dataclass(frozen=True)
class Header:
  version: int
  coder_id: int
  channel_causal: bool
  layer_depth: int             # the model's (v1); 0 in v2, which leaves it to the fingerprint
  source_format: int
  source_layer_depth: int      # the input .npz's; 0: not recorded (v2: the model's layer_depth)
  fingerprint: str             # hex: the model's whole fingerprint (v1) or its first 4 bytes (v2)
  chunks: tuple                # Chunk, in coding order
  sample_index: tuple          # original position of each coded sample, in coding order
  sample_crc: tuple            # v1: crc32 of np.packbits(code) of each coded sample; v2: ()
  chunk_crc: tuple             # v2: running CRC32 after each chunk; v1: ()
  crc_seed: int                # v2: CRC32 of the header bytes the chunk CRCs start from
  header_size: int             # offset of the payload

  @property
  def sample_count(self):
    return len(self.sample_index)

  @property
  def payload_size(self):
    return sum(chunk.total_bytes for chunk in self.chunks)

  @property
  def code_bits(self):
    """The code bits the whole file declares (what decoding produces), at most the sum of
    max_code_bits over its chunks."""
    return sum(chunk.code_bits for chunk in self.chunks)

  @property
  def crc_checks(self):
    """How many CRC32 checks decoding makes: one per code (v1), one per chunk (v2)."""
    return len(self.sample_crc) if self.version == 1 else len(self.chunk_crc)

  def model_matches(self, fingerprint):
    """Whether the model with this (hex) fingerprint is the one the file names."""
    return fingerprint[:len(self.fingerprint)] == self.fingerprint


def _crc8_table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    table.append(crc)
  return bytes(table)


_CRC8_TABLE = _crc8_table()


def crc8(data):
  """CRC-8/SMBUS: polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, MSB first, no final xor
  (check value of b'123456789': 0xF4). It detects every error of an odd number of bits, every
  burst of up to 8 bits and every 2-bit error less than 127 bits apart; 255 in 256 of the rest."""
  crc = 0
  for byte in data:
    crc = _CRC8_TABLE[crc ^ byte]
  return crc


varint = leb128.encode  # unsigned LEB128, shortest form


def packed_bits(codes):
  """np.packbits (MSB first) of a code or of a chunk's [samples, H, W, D] codes in C order."""
  return np.packbits(np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)).tobytes()


def _flags(fields, reordered, one_code, source_layer_depth, methods):
  return ((FLAG_CHANNEL_CAUSAL if fields['channel_causal'] else 0)
          | (FLAG_METHODS if methods else 0)
          | (FLAG_SAMPLE_ORDER if reordered else 0)
          | (fields['source_format'] << SOURCE_SHIFT)
          | (FLAG_SOURCE_LAYER_DEPTH if source_layer_depth else 0)
          | (FLAG_ONE_CODE if one_code else 0))


def pack(header_fields, chunks, sample_index, chunk_bits, payloads, version=VERSION):
  """-> the complete version-3 (or, version=2, version-2) file bytes.

  header_fields: dict with coder_id, channel_causal, source_format, source_layer_depth (0: not
  stored; give it only for a .npz whose layer_depth differs from the model's) and fingerprint
  (hex; its first 4 bytes are stored). chunk_bits: per chunk, `packed_bits` of its codes in coding
  order. payloads: per chunk, its stream (a multiple of 4 bytes, as its Chunk says) followed by
  its adaptive and raw segments (version 3; their lengths and the methods are the Chunk's).
  """
  if version not in LAYOUT_VERSIONS:
    raise ValueError(f'pack writes versions {LAYOUT_VERSIONS}, not {version}')
  sample_index = list(sample_index)
  reordered = sample_index != list(range(len(sample_index)))
  one_code = len(chunks) == 1 and chunks[0].samples == 1
  source_layer_depth = header_fields['source_layer_depth']
  if source_layer_depth and header_fields['source_format'] != SOURCE_NPZ:
    raise ValueError('source_layer_depth is stored for .npz sources only')
  with_methods = any(any(chunk.methods) for chunk in chunks)
  head = bytearray(HEAD.pack(MAGIC, version, header_fields['coder_id'],
                             _flags(header_fields, reordered, one_code, source_layer_depth,
                                    with_methods),
                             bytes.fromhex(header_fields['fingerprint'])[:FINGERPRINT_BYTES]))
  if source_layer_depth:
    head += varint(source_layer_depth)
  if not one_code:
    head += varint(len(chunks))
  for chunk, payload in zip(chunks, payloads, strict=True):
    fallback = any(chunk.methods)
    if (chunk.total_bytes != len(payload) or (version < MIXED_VERSION and chunk.payload_bytes % 4)
        or not (chunk.payload_bytes or fallback) or (fallback and version == 2)
        or bool(chunk.adaptive_bytes) != (METHOD_ADAPTIVE in chunk.methods)
        or bool(chunk.raw_bytes) != (METHOD_RAW in chunk.methods)):
      raise ValueError(f'chunk {chunk} does not match its stream of {len(payload)} bytes')
    head += varint(chunk.height) + varint(chunk.width) + varint(chunk.depth)
    if not one_code:
      head += varint(chunk.samples)
    if with_methods:
      head += method_field(chunk.methods)
      if chunk.adaptive_bytes:
        head += varint(chunk.adaptive_bytes)
      if chunk.raw_bytes:
        head += varint(chunk.raw_bytes)
    head += varint(chunk.payload_bytes if version >= MIXED_VERSION else chunk.payload_bytes // 4)
  if reordered:
    head += b''.join(varint(i) for i in sample_index)
  crc = zlib.crc32(head)
  for bits in chunk_bits:
    crc = zlib.crc32(bits, crc)
    head += CHUNK_CRC.pack(crc)
  head += HEADER_CHECK.pack(crc8(head))
  return bytes(head) + b''.join(payloads)


def pack_v1(header_fields, chunks, sample_index, sample_crc, payloads):
  """-> a version-1 file (the layout before version 2). header_fields: as `pack`, plus the
  model's layer_depth and the whole fingerprint; sample_crc: crc32 of each code's packed bits."""
  payload = b''.join(payloads)
  reordered = list(sample_index) != list(range(len(sample_index)))
  flags = ((FLAG_CHANNEL_CAUSAL if header_fields['channel_causal'] else 0)
           | (FLAG_SAMPLE_ORDER if reordered else 0))
  head = V1_FIXED_HEADER.pack(V1_MAGIC, 1, header_fields['coder_id'], flags,
                              header_fields['layer_depth'], header_fields['source_layer_depth'],
                              header_fields['source_format'], len(sample_index), len(chunks),
                              zlib.crc32(payload), len(payload),
                              bytes.fromhex(header_fields['fingerprint']))
  tables = b''.join(V1_CHUNK_ENTRY.pack(c.height, c.width, c.depth, c.samples, c.payload_bytes)
                    for c in chunks)
  tables += b''.join(V1_SAMPLE_ENTRY.pack(crc) for crc in sample_crc)
  if reordered:
    tables += b''.join(V1_SAMPLE_ENTRY.pack(i) for i in sample_index)
  head += tables
  return head + V1_CRC.pack(zlib.crc32(head)) + payload


def parse(data, source):
  """File bytes -> Header, after every check that needs no model. UserError on any problem."""
  def fail(problem):
    raise UserError(describe(source, problem))

  if data[:len(V1_MAGIC)] == V1_MAGIC:
    return _parse_v1(data, fail)
  if data and (MAGIC.startswith(data) or V1_MAGIC.startswith(data)):
    fail(f'truncated: {len(data)} bytes, shorter than the magic and version')
  if data[:len(MAGIC)] != MAGIC:
    fail('not an entropy-coder compressed file (wrong magic)')
  version = data[len(MAGIC)]  # version 1 files begin with V1_MAGIC instead
  if version not in LAYOUT_VERSIONS:
    fail(f'compressed-file version {version} is not supported (this build reads versions '
         f'{", ".join(map(str, READ_VERSIONS))})')
  return _parse_v2(data, fail, version)


class _Reader:
  """Reads varints from data[offset:], never past its end: running out is 'truncated'."""

  def __init__(self, data, offset, fail):
    self.data, self.offset, self._fail = data, offset, fail

  def truncated(self):
    self._fail(f'truncated: {len(self.data)} bytes end inside the header')

  def need(self, count):
    if self.offset + count > len(self.data):
      self.truncated()

  def varint(self):
    data, value, shift = self.data, 0, 0
    for _ in range(_MAX_VARINT_BYTES):
      if self.offset >= len(data):
        self.truncated()
      byte = data[self.offset]
      self.offset += 1
      value |= (byte & 0x7F) << shift
      if byte < 0x80:
        if byte == 0 and shift:
          self._fail('corrupt header (a number not in its shortest form)')
        return value
      shift += 7
    self._fail('corrupt header (a number longer than 64 bits)')


def _parse_methods(reader, fail):
  """Version 3's per-layer methods (method_field) -> tuple, checked: known methods, shortest."""
  count = reader.varint()
  reader.need(count + 1)  # and at least the payload_words varint
  packed = reader.data[reader.offset:reader.offset + count]
  reader.offset += count
  methods = [(byte >> (2 * j)) & 3 for byte in packed for j in range(4)]
  if (packed and packed[-1] == 0) or max(methods, default=0) > METHOD_RAW:
    fail('corrupt header (invalid layer methods)')
  while methods and methods[-1] == METHOD_MODEL:
    methods.pop()
  return tuple(methods)


def _parse_v2(data, fail, version):
  """Versions 2 and 3 (version 3 adds each chunk's methods and segment lengths)."""
  if len(data) < HEAD.size:
    fail(f'truncated: {len(data)} bytes, shorter than the {HEAD.size}-byte start of the header')
  _, version, coder_id, flags, fingerprint = HEAD.unpack_from(data, 0)
  one_code = bool(flags & FLAG_ONE_CODE)
  # Structure first (where the header ends), reading only bytes that exist and looping only as
  # often as the bytes left allow; the header check, then the meaning of the fields.
  reader = _Reader(data, HEAD.size, fail)
  source_layer_depth = reader.varint() if flags & FLAG_SOURCE_LAYER_DEPTH else 0
  chunk_count = 1 if one_code else reader.varint()
  # Each chunk needs at least 4 (one code) or 5 table bytes, 4 CRC bytes and a 4-byte stream.
  reader.need(chunk_count * (12 if one_code else 13) + HEADER_CHECK.size)
  entries = []
  for _ in range(chunk_count):
    height, width, depth = reader.varint(), reader.varint(), reader.varint()
    samples = 1 if one_code else reader.varint()
    methods, adaptive_bytes, raw_bytes = (), 0, 0
    if version >= 3 and flags & FLAG_METHODS:
      methods = _parse_methods(reader, fail)
      adaptive_bytes = reader.varint() if METHOD_ADAPTIVE in methods else 0
      raw_bytes = reader.varint() if METHOD_RAW in methods else 0
    entries.append((height, width, depth, samples, reader.varint(), methods, adaptive_bytes,
                    raw_bytes))
  sample_count = sum(entry[3] for entry in entries)
  index = None
  if flags & FLAG_SAMPLE_ORDER:
    reader.need(sample_count)  # at least one byte each
    index = [reader.varint() for _ in range(sample_count)]
  tables_end = reader.offset
  reader.need(CHUNK_CRC.size * chunk_count + HEADER_CHECK.size)
  check_at = tables_end + CHUNK_CRC.size * chunk_count
  (check,) = HEADER_CHECK.unpack_from(data, check_at)
  if crc8(memoryview(data)[:check_at]) != check:
    fail('corrupt header (header check mismatch)')
  if coder_id not in READ_CODERS:
    fail(f'unknown coder id {coder_id} (this build knows coders {", ".join(map(str, READ_CODERS))})')
  source_format = (flags & SOURCE_MASK) >> SOURCE_SHIFT
  if (flags & ~_KNOWN_FLAGS[version]
      or (one_code and flags & FLAG_SAMPLE_ORDER)
      or (flags & FLAG_METHODS and not any(entry[5] for entry in entries))
      or (flags & FLAG_SOURCE_LAYER_DEPTH
          and (source_format != SOURCE_NPZ or not 1 <= source_layer_depth <= MAX_DIM))):
    fail('corrupt header (invalid flags, source format or source layer_depth)')
  if sample_count > MAX_SAMPLES:
    fail(f'corrupt header ({sample_count} samples)')

  # The chunk table, all of it before anything is decoded: shapes, sizes that add up to the
  # payload (streams are back to back, so none can overlap another or reach past the end), and
  # the work bound on every chunk, hence on the whole file's declared output.
  chunks = []
  unit = 1 if version >= MIXED_VERSION else 4  # the model stream's length: bytes or words
  for height, width, depth, samples, size, methods, adaptive_bytes, raw_bytes in entries:
    chunk = Chunk(height, width, depth, samples, unit * size, methods, adaptive_bytes, raw_bytes)
    # Every stream or segment present holds at least one word or byte (pack writes no others),
    # and a chunk has a model stream unless a layer is coded otherwise.
    if (min(height, width, depth, samples) < 1 or max(height, width, depth) > MAX_DIM
        or not (size or methods)
        or (METHOD_ADAPTIVE in methods and adaptive_bytes < 1)
        or (METHOD_RAW in methods and raw_bytes < 1)
        or len(methods) > depth):
      fail(f'corrupt chunk table entry {chunk}')
    chunks.append(chunk)
  payload_start = check_at + HEADER_CHECK.size
  payload_size = sum(chunk.total_bytes for chunk in chunks)
  if len(data) != payload_start + payload_size:
    what = 'truncated' if len(data) < payload_start + payload_size else 'trailing bytes after the payload'
    fail(f'{what}: {len(data)} bytes, expected {payload_start + payload_size}')
  _check_work(chunks, fail, version)
  if index is None:
    index = list(range(sample_count))
  elif sorted(index) != list(range(sample_count)):
    fail('corrupt header (sample order is not a permutation)')
  chunk_crc = tuple(CHUNK_CRC.unpack_from(data, tables_end + CHUNK_CRC.size * i)[0]
                    for i in range(chunk_count))
  return Header(version=version, coder_id=coder_id, channel_causal=bool(flags & FLAG_CHANNEL_CAUSAL),
                layer_depth=0, source_format=source_format, source_layer_depth=source_layer_depth,
                fingerprint=fingerprint.hex(), chunks=tuple(chunks), sample_index=tuple(index),
                sample_crc=(), chunk_crc=chunk_crc, crc_seed=zlib.crc32(data[:tables_end]),
                header_size=payload_start)


def max_model_symbols(payload_bytes, version):
  """The most symbols a chunk's model stream of `payload_bytes` can hold: constriction's
  (max_code_bits, versions 2 and 3) or the binary range coder's (max_adaptive_symbols, version
  4, whose mixed probabilities keep to the same [Q_MIN, Q_MAX])."""
  if not payload_bytes:
    return 0
  return (max_adaptive_symbols(payload_bytes) if version >= MIXED_VERSION
          else max_code_bits(payload_bytes))


def chunk_capacity(chunk, version):
  """The most code bits a chunk's streams and segments can hold (max_model_symbols,
  max_adaptive_symbols, 8 a byte raw)."""
  return (max_model_symbols(chunk.payload_bytes, version)
          + max_adaptive_symbols(chunk.adaptive_bytes) + 8 * chunk.raw_bytes)


def _check_work(chunks, fail, version):
  for i, chunk in enumerate(chunks):
    if chunk.code_bits > chunk_capacity(chunk, version):
      fail(f'corrupt chunk table: chunk {i} declares {chunk.code_bits} code bits, which cannot '
           f'come from {chunk.total_bytes} bytes (at most {chunk_capacity(chunk, version)})')


def _parse_v1(data, fail):
  """The version-1 layout (docs/FORMAT.md, "Version 1"), checked as before version 2."""
  if len(data) < V1_FIXED_HEADER.size + V1_CRC.size:
    fail(f'truncated: {len(data)} bytes, shorter than the {V1_FIXED_HEADER.size}-byte header')
  (_, version, coder_id, flags, layer_depth, source_layer_depth, source_format, sample_count,
   chunk_count, payload_crc, payload_size, fingerprint) = V1_FIXED_HEADER.unpack_from(data, 0)
  if version != 1:
    fail(f'compressed-file version {version} is not supported (this build reads versions '
         f'{", ".join(map(str, READ_VERSIONS))})')
  if coder_id not in READ_CODERS:
    fail(f'unknown coder id {coder_id} (this build knows coders {", ".join(map(str, READ_CODERS))})')
  if chunk_count > sample_count or sample_count > MAX_SAMPLES:
    fail(f'corrupt header ({sample_count} samples in {chunk_count} chunks)')
  sample_tables = 2 if flags & FLAG_SAMPLE_ORDER else 1
  header_size = (V1_FIXED_HEADER.size + chunk_count * V1_CHUNK_ENTRY.size
                 + sample_tables * sample_count * V1_SAMPLE_ENTRY.size)
  if len(data) < header_size + V1_CRC.size:
    fail(f'truncated: {len(data)} bytes, the header alone needs {header_size + V1_CRC.size}')
  (header_crc,) = V1_CRC.unpack_from(data, header_size)
  if zlib.crc32(data[:header_size]) != header_crc:
    fail('corrupt header (CRC32 mismatch)')
  if flags & ~_V1_KNOWN_FLAGS or source_format not in SOURCE_NAMES or layer_depth < 1:
    fail('corrupt header (invalid flags, source format or layer_depth)')
  payload_start = header_size + V1_CRC.size
  if len(data) != payload_start + payload_size:
    what = 'truncated' if len(data) < payload_start + payload_size else 'trailing bytes after the payload'
    fail(f'{what}: {len(data)} bytes, expected {payload_start + payload_size}')
  if zlib.crc32(data[payload_start:]) != payload_crc:
    fail('corrupt payload (CRC32 mismatch)')
  chunks = []
  offset = V1_FIXED_HEADER.size
  for _ in range(chunk_count):
    chunk = Chunk(*V1_CHUNK_ENTRY.unpack_from(data, offset))
    offset += V1_CHUNK_ENTRY.size
    if (min(chunk.height, chunk.width, chunk.depth, chunk.samples) < 1
        or max(chunk.height, chunk.width) > MAX_DIM or chunk.depth > MAX_DIM
        or chunk.depth % layer_depth or chunk.payload_bytes % 4 or chunk.payload_bytes == 0):
      fail(f'corrupt chunk table entry {chunk}')  # every stream holds at least one word
    chunks.append(chunk)
  if sum(c.samples for c in chunks) != sample_count or sum(c.payload_bytes for c in chunks) != payload_size:
    fail('corrupt header (chunk table does not add up)')
  _check_work(chunks, fail, 1)
  crcs = [V1_SAMPLE_ENTRY.unpack_from(data, offset + 4 * i)[0] for i in range(sample_count)]
  offset += 4 * sample_count
  index = list(range(sample_count))
  if flags & FLAG_SAMPLE_ORDER:
    index = [V1_SAMPLE_ENTRY.unpack_from(data, offset + 4 * i)[0] for i in range(sample_count)]
    if sorted(index) != list(range(sample_count)):
      fail('corrupt header (sample order is not a permutation)')
  return Header(version=1, coder_id=coder_id, channel_causal=bool(flags & FLAG_CHANNEL_CAUSAL),
                layer_depth=layer_depth, source_format=source_format,
                source_layer_depth=source_layer_depth, fingerprint=fingerprint.hex(),
                chunks=tuple(chunks), sample_index=tuple(index), sample_crc=tuple(crcs),
                chunk_crc=(), crc_seed=0, header_size=payload_start)


def verify_decoded(header, decoded, source):
  """Raises a UserError unless the decoded codes (per chunk, [samples, H, W, D] uint8) are the
  ones the file's CRC32s describe: v2 the running CRC32 after each chunk, v1 one per code."""
  if header.version == 1:
    position = 0
    for codes in decoded:
      for code in codes:
        if zlib.crc32(packed_bits(code)) != header.sample_crc[position]:
          raise UserError(describe(source, f'sample {header.sample_index[position]} failed its '
                                   'CRC32 check after decoding (damaged file or wrong model)'))
        position += 1
    return
  crc, position = header.crc_seed, 0
  for i, (chunk, codes) in enumerate(zip(header.chunks, decoded, strict=True)):
    crc = zlib.crc32(packed_bits(codes), crc)
    if crc != header.chunk_crc[i]:
      what = (f'sample {header.sample_index[position]}' if chunk.samples == 1 else
              f'chunk {i} ({chunk.samples} codes of {chunk.height}x{chunk.width}x{chunk.depth})')
      raise UserError(describe(source, f'{what} failed its CRC32 check after decoding (damaged '
                               'file or wrong model)'))
    position += chunk.samples


def chunk_payloads(data, header):
  """Yields each chunk's model stream bytes (a memoryview into data)."""
  for stream, _, _ in chunk_segments(data, header):
    yield stream


def chunk_segments(data, header):
  """Yields each chunk's (model stream, adaptive segment, raw segment), memoryviews into data."""
  view = memoryview(data)
  offset = header.header_size
  for chunk in header.chunks:
    segments = []
    for size in (chunk.payload_bytes, chunk.adaptive_bytes, chunk.raw_bytes):
      segments.append(view[offset:offset + size])
      offset += size
    yield tuple(segments)
