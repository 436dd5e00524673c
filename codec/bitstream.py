"""The compressed file container: header, chunk and sample tables, payload (docs/FORMAT.md).

    fixed header  (72 bytes, little-endian)
      magic 8s  version H  coder_id B  flags B  layer_depth H  source_layer_depth H
      source_format B  (3 zero bytes)  sample_count I  chunk_count I  payload_crc32 I
      payload_size Q  model_fingerprint 32s
    chunk table   chunk_count x (height I, width I, depth I, samples I, payload_bytes Q)
    sample CRCs   sample_count x crc32 of np.packbits(code) I, in coding order
    sample order  sample_count x original_index I, in coding order -- only with FLAG_SAMPLE_ORDER
                  (absent when the coding order is the input order, e.g. all codes of one shape)
    header_crc32  I   over everything above
    payload       the chunks' range-coder streams, back to back

Everything is checked before any decoding starts: magic, version, coder, both CRCs, exact file
length, table consistency and a bound on the work (`max_code_bits`: code bits per payload bit),
so a damaged or hostile file gives one clear UserError and never a hang, an absurd allocation or
a silently wrong result: decoding a file of N bytes costs work and memory proportional to N.
"""
import dataclasses
import math
import struct
import zlib

from entropy_coder.errors import UserError, describe

MAGIC = b'\x89NEC\r\n\x1a\n'   # 'NEC' = neural entropy coder; \r\n, \x1a catch text-mode mangling
VERSION = 1
# coder 1: constriction 0.5 queue RangeEncoder, Bernoulli(perfect=False), P(1) rounded to
# q/2^16 (q in [1, 65535]) from the float32 incremental engine with deterministic exp (arith.py).
CODER_ID = 1
FLAG_CHANNEL_CAUSAL = 1
FLAG_SAMPLE_ORDER = 2
_KNOWN_FLAGS = FLAG_CHANNEL_CAUSAL | FLAG_SAMPLE_ORDER

SOURCE_API = 0
SOURCE_NPZ = 1
SOURCE_TFRECORD = 2
SOURCE_TFRECORD_GZIP = 3
SOURCE_NAMES = {SOURCE_API: 'api', SOURCE_NPZ: 'npz', SOURCE_TFRECORD: 'tfrecord',
                SOURCE_TFRECORD_GZIP: 'tfrecord-gzip'}

FIXED_HEADER = struct.Struct('<8sHBBHHB3xIIIQ32s')
CHUNK_ENTRY = struct.Struct('<IIIIQ')
SAMPLE_ENTRY = struct.Struct('<I')
CRC = struct.Struct('<I')
PAYLOAD_CRC_OFFSET = 28
# Limits that no real file reaches; they stop a damaged or hostile header from asking for
# absurd memory or time.
MAX_DIM = 1 << 16
MAX_SAMPLES = 1 << 26

# The most probable a coded symbol (bit value) can be under coder 1: P(1) = q / 2^16 with q in
# [33, 65503], so P(either value) <= 65503 / 2^16. The model clips pred to +-0.999 in float32
# (codec/network.py PRED_CLIP) and the engine rounds P(1) = (pred + 1) / 2 to the grid
# (engine._quantize): float32(0.999) = 0.99900001287..., P = 0.99950000643..., q = round(P * 2^16)
# = round(65503.23) = 65503; the other end gives round(32.77) = 33 = 2^16 - 65503.
# test_work_bound_assumes_the_engines_clip checks this against the engine.
MAX_SYMBOL_PROBABILITY = 65503 / 65536
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


@dataclasses.dataclass(frozen=True)
class Chunk:
  height: int
  width: int
  depth: int
  samples: int
  payload_bytes: int

  @property
  def code_bits(self):
    return self.samples * self.height * self.width * self.depth


@dataclasses.dataclass(frozen=True)
class Header:
  coder_id: int
  channel_causal: bool
  layer_depth: int
  source_format: int
  source_layer_depth: int
  fingerprint: str             # hex
  chunks: tuple                # Chunk, in coding order
  sample_index: tuple          # original position of each coded sample, in coding order
  sample_crc: tuple            # crc32 of np.packbits(code) of each coded sample
  payload_crc: int
  header_size: int

  @property
  def sample_count(self):
    return len(self.sample_index)

  @property
  def payload_size(self):
    return sum(chunk.payload_bytes for chunk in self.chunks)

  @property
  def code_bits(self):
    """The code bits the whole file declares (what decoding produces), at most the sum of
    max_code_bits over its chunks."""
    return sum(chunk.code_bits for chunk in self.chunks)


def pack(header_fields, chunks, sample_index, sample_crc, payloads):
  """-> the complete file bytes. header_fields: dict of the Header scalars (no tables)."""
  payload = b''.join(payloads)
  reordered = list(sample_index) != list(range(len(sample_index)))
  flags = ((FLAG_CHANNEL_CAUSAL if header_fields['channel_causal'] else 0)
           | (FLAG_SAMPLE_ORDER if reordered else 0))
  head = FIXED_HEADER.pack(MAGIC, VERSION, header_fields['coder_id'], flags,
                           header_fields['layer_depth'], header_fields['source_layer_depth'],
                           header_fields['source_format'], len(sample_index), len(chunks),
                           zlib.crc32(payload), len(payload), bytes.fromhex(header_fields['fingerprint']))
  tables = b''.join(CHUNK_ENTRY.pack(c.height, c.width, c.depth, c.samples, c.payload_bytes) for c in chunks)
  tables += b''.join(SAMPLE_ENTRY.pack(crc) for crc in sample_crc)
  if reordered:
    tables += b''.join(SAMPLE_ENTRY.pack(i) for i in sample_index)
  head += tables
  return head + CRC.pack(zlib.crc32(head)) + payload


def parse(data, source):
  """File bytes -> Header, after every check that needs no model. UserError on any problem."""
  def fail(problem):
    raise UserError(describe(source, problem))

  if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
    fail('not an entropy-coder compressed file (wrong magic)')
  if len(data) < FIXED_HEADER.size + CRC.size:
    fail(f'truncated: {len(data)} bytes, shorter than the {FIXED_HEADER.size}-byte header')
  (_, version, coder_id, flags, layer_depth, source_layer_depth, source_format, sample_count,
   chunk_count, payload_crc, payload_size, fingerprint) = FIXED_HEADER.unpack_from(data, 0)
  if version != VERSION:
    fail(f'compressed-file version {version} is not supported (this build reads version {VERSION})')
  if coder_id != CODER_ID:
    fail(f'unknown coder id {coder_id} (this build knows coder {CODER_ID})')
  if chunk_count > sample_count or sample_count > MAX_SAMPLES:
    fail(f'corrupt header ({sample_count} samples in {chunk_count} chunks)')
  sample_tables = 2 if flags & FLAG_SAMPLE_ORDER else 1
  header_size = (FIXED_HEADER.size + chunk_count * CHUNK_ENTRY.size
                 + sample_tables * sample_count * SAMPLE_ENTRY.size)
  if len(data) < header_size + CRC.size:
    fail(f'truncated: {len(data)} bytes, the header alone needs {header_size + CRC.size}')
  (header_crc,) = CRC.unpack_from(data, header_size)
  if zlib.crc32(data[:header_size]) != header_crc:
    fail('corrupt header (CRC32 mismatch)')
  if flags & ~_KNOWN_FLAGS or source_format not in SOURCE_NAMES or layer_depth < 1:
    fail('corrupt header (invalid flags, source format or layer_depth)')
  payload_start = header_size + CRC.size
  if len(data) != payload_start + payload_size:
    what = 'truncated' if len(data) < payload_start + payload_size else 'trailing bytes after the payload'
    fail(f'{what}: {len(data)} bytes, expected {payload_start + payload_size}')
  if zlib.crc32(data[payload_start:]) != payload_crc:
    fail('corrupt payload (CRC32 mismatch)')

  # The chunk table, all of it before anything is decoded: shapes, sizes that add up to the
  # payload (streams are back to back, so none can overlap another or reach past the end), and
  # the work bound on every chunk, hence on the whole file's declared output.
  chunks = []
  offset = FIXED_HEADER.size
  for _ in range(chunk_count):
    chunk = Chunk(*CHUNK_ENTRY.unpack_from(data, offset))
    offset += CHUNK_ENTRY.size
    if (min(chunk.height, chunk.width, chunk.depth, chunk.samples) < 1
        or max(chunk.height, chunk.width) > MAX_DIM or chunk.depth > MAX_DIM
        or chunk.depth % layer_depth or chunk.payload_bytes % 4 or chunk.payload_bytes == 0):
      fail(f'corrupt chunk table entry {chunk}')  # every stream holds at least one word
    chunks.append(chunk)
  if sum(c.samples for c in chunks) != sample_count or sum(c.payload_bytes for c in chunks) != payload_size:
    fail('corrupt header (chunk table does not add up)')
  for i, chunk in enumerate(chunks):
    if chunk.code_bits > max_code_bits(chunk.payload_bytes):
      fail(f'corrupt chunk table: chunk {i} declares {chunk.code_bits} code bits, which cannot '
           f'come from {chunk.payload_bytes} bytes (at most {max_code_bits(chunk.payload_bytes)})')
  crcs = [SAMPLE_ENTRY.unpack_from(data, offset + 4 * i)[0] for i in range(sample_count)]
  offset += 4 * sample_count
  index = list(range(sample_count))
  if flags & FLAG_SAMPLE_ORDER:
    index = [SAMPLE_ENTRY.unpack_from(data, offset + 4 * i)[0] for i in range(sample_count)]
    if sorted(index) != list(range(sample_count)):
      fail('corrupt header (sample order is not a permutation)')
  return Header(coder_id=coder_id, channel_causal=bool(flags & FLAG_CHANNEL_CAUSAL),
                layer_depth=layer_depth, source_format=source_format,
                source_layer_depth=source_layer_depth, fingerprint=fingerprint.hex(),
                chunks=tuple(chunks), sample_index=tuple(index), sample_crc=tuple(crcs),
                payload_crc=payload_crc, header_size=payload_start)


def chunk_payloads(data, header):
  """Yields each chunk's stream bytes (a memoryview into data)."""
  view = memoryview(data)
  offset = header.header_size
  for chunk in header.chunks:
    yield view[offset:offset + chunk.payload_bytes]
    offset += chunk.payload_bytes
