"""Damaged version-1 files (the layout before version 2, still read): one-line UserErrors, never
a hang or a wrong output. The same checks as before version 2, against files written by
`compress(..., format_version=1)` (bitstream.pack_v1); test_codec_errors.py tests version 2."""
import struct
import zlib

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from helpers import reference_model
from hostile_files import (RAW_DAMAGE, bounded_by_the_file, damage_raw, error_of, noise,
                           refused_fast, sample_codes)
from entropy_coder import codec, model_files
from entropy_coder.codec import bitstream
from entropy_coder.errors import UserError



@pytest.fixture(scope='module')
def model(tmp_path_factory):
  return reference_model(str(tmp_path_factory.mktemp('reference_model')))


@pytest.fixture(scope='module')
def codes():
  return sample_codes()


@pytest.fixture(scope='module')
def packed(model, codes):
  data = codec.compress(codes, model, format_version=1)
  assert data.startswith(bitstream.V1_MAGIC) and codec.read_header(data).version == 1
  return data


_error = error_of


def test_wrong_model_is_named(model, packed, tmp_path):
  weights = dict(model.weights)
  weights['layer0/brnn/out1x1_b/bias'] = weights['layer0/brnn/out1x1_b/bias'] + 0.01
  model_files.write_model_files(str(tmp_path), weights, model.model_config)
  other = model_files.read_model_files(str(tmp_path))
  assert 'different model' in _error(packed, other, 'codes.nec')


def test_wrong_magic_and_version(model, packed):
  assert 'wrong magic' in _error(b'PK\x03\x04' + packed[4:], model)
  assert 'wrong magic' in _error(b'', model)
  newer = bytearray(packed)
  newer[8:10] = struct.pack('<H', 5)
  assert 'version 5 is not supported (this build reads versions 1, 2, 3, 4)' in _error(bytes(newer), model)
  other_coder = bytearray(packed)
  other_coder[10] = 99
  assert 'unknown coder' in _error(bytes(other_coder), model)


def test_every_truncation_is_reported(model, packed):
  for length in range(0, len(packed)):
    message = _error(packed[:length], model)
    assert 'truncated' in message or 'magic' in message or 'corrupt' in message, (length, message)
  assert 'trailing bytes' in _error(packed + b'\0', model)


def test_every_flipped_byte_is_reported(model, packed):
  for position in range(len(packed)):
    damaged = bytearray(packed)
    damaged[position] ^= 0x10
    _error(bytes(damaged), model)


def _recrc(data, original):
  """Re-seals a tampered file (same header layout as `original`) with valid CRCs, so only the
  deeper checks can catch the damage."""
  header_size = codec.read_header(original).header_size - bitstream.V1_CRC.size
  payload = data[header_size + bitstream.V1_CRC.size:]
  head = bytearray(data[:header_size])
  struct.pack_into('<I', head, bitstream.V1_PAYLOAD_CRC_OFFSET, zlib.crc32(payload))
  return bytes(head) + bitstream.V1_CRC.pack(zlib.crc32(bytes(head))) + payload


def _chunk_offset(field):
  """Byte offset of a field (0 height, 1 width, 2 depth, 3 samples) of chunk 0's table entry."""
  return bitstream.V1_FIXED_HEADER.size + 4 * field


def _seal(data):
  """Re-seals a tampered file with valid CRCs at the places its own (possibly tampered) counts
  say; a file too short for its header is left as it is (it is truncated either way)."""
  if len(data) < bitstream.V1_FIXED_HEADER.size:
    return data
  fields = bitstream.V1_FIXED_HEADER.unpack_from(data, 0)
  flags, sample_count, chunk_count = fields[3], fields[7], fields[8]
  header_size = (bitstream.V1_FIXED_HEADER.size + chunk_count * bitstream.V1_CHUNK_ENTRY.size
                 + (2 if flags & bitstream.FLAG_SAMPLE_ORDER else 1) * 4 * sample_count)
  if len(data) < header_size + bitstream.V1_CRC.size:
    return data
  head = bytearray(data[:header_size])
  payload = data[header_size + bitstream.V1_CRC.size:]
  struct.pack_into('<I', head, bitstream.V1_PAYLOAD_CRC_OFFSET, zlib.crc32(payload))
  return bytes(head) + bitstream.V1_CRC.pack(zlib.crc32(bytes(head))) + payload


def _craft(packed, chunks, payloads):
  """A file with valid CRCs for the reference model (fingerprint taken from `packed`) whose chunk
  table says `chunks` (height, width, depth, samples, payload_bytes) and whose payload is
  `payloads` (bytes, possibly disagreeing with the table)."""
  header = codec.read_header(packed)
  samples = sum(chunk[3] for chunk in chunks)
  fields = dict(coder_id=bitstream.CODER_ID, channel_causal=False, layer_depth=2,
                source_format=bitstream.SOURCE_API, source_layer_depth=0,
                fingerprint=header.fingerprint)
  return bitstream.pack_v1(fields, [bitstream.Chunk(*chunk) for chunk in chunks], range(samples),
                        [0] * samples, payloads)


def test_issue_file_declaring_a_16384x16384x2_chunk_isrefused_fast(model, packed):
  """The file of the issue: 1,120 bytes, valid CRCs, one 16384x16384x2 chunk (2^29 code bits,
  exactly the old bound of 2^16 per payload bit): ~22 GB and 2^28 pixel steps if decoded."""
  data = _craft(packed, [(16384, 16384, 2, 1, 1016)], [noise(1016)])
  assert len(data) == 1120
  message = refused_fast(data, model, 'cannot come from')
  assert f'at most {bitstream.max_code_bits(1016)}' in message


@pytest.mark.parametrize('chunks, payload_sizes, problem', [
    # huge declared shapes, each within the old bound of 2^16 symbols per payload bit
    ([(1, 65536, 16, 16, 1024)], [1024], 'cannot come from'),
    ([(65536, 1, 16, 16, 1024)], [1024], 'cannot come from'),
    ([(4096, 4096, 2, 1, 512), (2, 2, 2, 1, 4)], [512, 4], 'cannot come from'),
    # huge sample counts: 1,000 codes of 64x64x8 from a 1 KB stream
    ([(64, 64, 8, 1000, 1024)], [1024], 'cannot come from'),
    ([(1, 1, 16, 60000, 4)], [4], 'cannot come from'),
    # the last chunk is the hostile one: refused before the first chunk is decoded
    ([(2, 2, 2, 1, 4)] * 20 + [(2048, 2048, 2, 1, 256)], [4] * 20 + [256], 'cannot come from'),
    # an empty stream cannot hold a symbol (the coder writes at least one word per stream)
    ([(1000, 1000, 2, 1, 0), (2, 2, 2, 1, 8)], [0, 8], 'corrupt chunk table entry'),
    # lying chunk tables: sizes that overlap, leave a gap or point past the end of the payload
    ([(2, 2, 2, 1, 8), (2, 2, 2, 1, 8)], [8], 'does not add up'),
    ([(2, 2, 2, 1, 8), (2, 2, 2, 1, 8)], [8, 8, 8], 'does not add up'),
    ([(2, 2, 2, 1, 1 << 63), (2, 2, 2, 1, 8)], [8, 8], 'does not add up'),
    ([(2, 2, 2, 1, (1 << 64) - 8), (2, 2, 2, 1, 16)], [8], 'does not add up'),
    ([(2, 2, 2, 1, 6), (2, 2, 2, 1, 2)], [8], 'corrupt chunk table entry'),
])
def test_crafted_tables_with_valid_crcs_arerefused_fast(model, packed, chunks, payload_sizes,
                                                         problem):
  refused_fast(_craft(packed, chunks, [noise(n) for n in payload_sizes]), model, problem)


@pytest.mark.parametrize('offset, form, value, problem', [
    (20, '<I', bitstream.MAX_SAMPLES, 'truncated'),           # sample_count: a 256 MB CRC table
    (20, '<I', (1 << 32) - 1, 'corrupt header'),
    (24, '<I', (1 << 32) - 1, 'corrupt header'),               # chunk_count
    (32, '<Q', (1 << 64) - 1, 'truncated'),                    # payload_size
])
def test_crafted_counts_with_valid_crcs_arerefused_fast(model, packed, offset, form, value,
                                                         problem):
  damaged = bytearray(packed)
  struct.pack_into(form, damaged, offset, value)
  refused_fast(_seal(bytes(damaged)), model, problem)


def test_resealed_payload_damage_never_decodes_silently(model, packed, codes):
  """With the CRCs forged, the stream check or the per-sample CRC32 must still catch damage."""
  header = codec.read_header(packed)
  caught = 0
  for offset in range(header.header_size, len(packed)):
    for mask in (0x01, 0x80):
      damaged = bytearray(packed)
      damaged[offset] ^= mask
      try:
        restored = codec.decompress(_recrc(bytes(damaged), packed), model)
      except UserError as e:
        assert '\n' not in str(e)
        caught += 1
        continue
      # A flip the range coder absorbs must still give back exactly the input.
      assert all(np.array_equal(a, b) for a, b in zip(restored, codes))
  assert caught > 0


def test_resealed_sample_crc_mismatch_is_reported(model, packed):
  header = codec.read_header(packed)
  damaged = bytearray(packed)
  crc_offset = bitstream.V1_FIXED_HEADER.size + bitstream.V1_CHUNK_ENTRY.size * len(header.chunks)
  damaged[crc_offset] ^= 0xFF
  assert 'failed its CRC32 check' in _error(_recrc(bytes(damaged), packed), model)


def test_header_cannot_request_unbounded_work(model, packed):
  """Even with forged CRCs, a header cannot make the decoder run for ages or allocate absurdly."""
  for field, value, problem in [(0, 60000, 'cannot come from'), (1, 70000, 'corrupt chunk table'),
                                (3, 10 ** 6, 'corrupt'), (2, 3, 'corrupt chunk table')]:
    damaged = bytearray(packed)
    struct.pack_into('<I', damaged, _chunk_offset(field), value)
    if field == 0:
      struct.pack_into('<I', damaged, _chunk_offset(1), 60000)
    assert problem in _error(_recrc(bytes(damaged), packed), model)


# Hostile values for the table fields: the edges of u32 / u64 and of the format's limits.
_HOSTILE_U32 = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 255, 256, 4095, 16384, 65535, 65536,
                                           65537, 1 << 24, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]),
                         st.integers(0, (1 << 32) - 1))
_HOSTILE_U64 = st.one_of(_HOSTILE_U32,
                         st.sampled_from([1 << 32, 1 << 63, (1 << 64) - 4, (1 << 64) - 1]),
                         st.integers(0, (1 << 64) - 1))


def _table_fields(packed):
  """(offset, struct format) of every count and size field of the header and chunk table."""
  header = codec.read_header(packed)
  fields = [(20, '<I'), (24, '<I'), (32, '<Q')]  # sample_count, chunk_count, payload_size
  for i in range(len(header.chunks)):
    base = bitstream.V1_FIXED_HEADER.size + i * bitstream.V1_CHUNK_ENTRY.size
    fields += [(base + 4 * f, '<I') for f in range(4)] + [(base + 16, '<Q')]
  return fields


@hypothesis.settings(max_examples=100, deadline=5000,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_fuzzed_files_give_user_errors_only(model, packed, codes, data):
  """Random damage, raw or re-sealed with valid CRCs (so that only the table checks and the
  work bound stand between it and the decoder): a one-line UserError or the exact input, fast."""
  damaged = bytearray(packed)
  kind = data.draw(st.sampled_from(['flip', 'cut', 'insert', 'overwrite', 'shape', 'table',
                                    'tables']))
  position = data.draw(st.integers(0, len(packed) - 1))
  if kind in RAW_DAMAGE:
    damage_raw(damaged, kind, position, data)
  elif kind == 'shape':  # a chunk's height or width anywhere up to MAX_DIM, re-sealed
    chunk = data.draw(st.integers(0, len(codec.read_header(packed).chunks) - 1))
    offset = (bitstream.V1_FIXED_HEADER.size + chunk * bitstream.V1_CHUNK_ENTRY.size
              + 4 * data.draw(st.integers(0, 1)))
    big = bitstream.MAX_DIM
    size = data.draw(st.integers(1, big)
                     | st.sampled_from([2, 4096, big // 4, big // 2, big - 1, big]))
    struct.pack_into('<I', damaged, offset, size)
    damaged = bytearray(_seal(bytes(damaged)))
  else:  # one ('table') or several ('tables') count / size fields set to hostile values, re-sealed
    fields = _table_fields(packed)
    for offset, form in data.draw(st.lists(st.sampled_from(fields), min_size=1,
                                           max_size=1 if kind == 'table' else 4)):
      value = data.draw(_HOSTILE_U64 if form == '<Q' else _HOSTILE_U32)
      struct.pack_into(form, damaged, offset, value)
    damaged = bytearray(_seal(bytes(damaged)))
  if bytes(damaged) == packed:
    return
  with bounded_by_the_file(damaged):
    try:
      restored = codec.decompress(bytes(damaged), model)
    except UserError as e:
      assert '\n' not in str(e)
      return
  assert all(np.array_equal(a, b) for a, b in zip(restored, codes))


def test_sample_order_table_must_be_a_permutation(model):
  mixed = [np.zeros((2, 2, 2), np.uint8), np.ones((3, 3, 2), np.uint8), np.ones((2, 2, 2), np.uint8)]
  data = codec.compress(mixed, model, format_version=1)
  header = codec.read_header(data)
  assert header.sample_index == (0, 2, 1)  # coded by shape, restored to the input order
  order_offset = (bitstream.V1_FIXED_HEADER.size + bitstream.V1_CHUNK_ENTRY.size * len(header.chunks)
                  + bitstream.V1_SAMPLE_ENTRY.size * 3)
  damaged = bytearray(data)
  struct.pack_into('<I', damaged, order_offset, 1)  # order 1, 2, 1
  assert 'not a permutation' in _error(_recrc(bytes(damaged), data), model)
