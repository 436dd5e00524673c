"""Damaged files, wrong models and bad codes: one-line UserErrors, never a hang or wrong output.

The files here are version 2, the format compress writes (docs/FORMAT.md); the tests build and
re-seal them with their own writer of the documented layout (`_v2_file`), independent of
bitstream.pack, and `test_the_bytes_are_the_documented_layout` holds the two together.
test_codec_errors_v1.py makes the same attacks on version-1 files, which are still read.
"""
import os
import struct
import subprocess
import sys
import tracemalloc
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
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  return reference_model(str(tmp_path_factory.mktemp('reference_model')))


@pytest.fixture(scope='module')
def other_model(model, tmp_path_factory):
  weights = dict(model.weights)
  weights['layer0/brnn/out1x1_b/bias'] = weights['layer0/brnn/out1x1_b/bias'] + 0.01
  model_dir = str(tmp_path_factory.mktemp('other_model'))
  model_files.write_model_files(model_dir, weights, model.model_config)
  return model_files.read_model_files(model_dir)


@pytest.fixture(scope='module')
def codes():
  return sample_codes()


@pytest.fixture(scope='module')
def packed(model, codes):
  """Two chunks: 3 codes of 5x6x4, 1 of 2x3x2."""
  data = codec.compress(codes, model, format_version=2)
  assert codec.read_header(data).version == 2
  return data


@pytest.fixture(scope='module')
def one_code(model, codes):
  """A one-code file (FLAG_ONE_CODE)."""
  return codec.compress(codes[:1], model, format_version=2)


_error = error_of


def _error_or_exact(data, model, codes):
  """A damaged file must give a one-line UserError or exactly the input (a flip in the stream's
  slack bits that the range coder absorbs): never other codes. -> the message or None."""
  try:
    restored = codec.decompress(data, model)
  except UserError as e:
    assert '\n' not in str(e)
    return str(e)
  assert len(restored) == len(codes) and all(np.array_equal(a, b) for a, b in zip(restored, codes))
  return None


# ---- the documented layout, written independently of bitstream.pack ----------------------------

def _crc8(data):
  """CRC-8/SMBUS bit by bit: polynomial 0x07, initial 0, MSB first, no final xor."""
  crc = 0
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
  return crc


def test_the_header_check_is_crc8_smbus():
  assert _crc8(b'123456789') == bitstream.crc8(b'123456789') == 0xF4  # the catalogued check value
  data = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes()
  assert all(_crc8(data[:n]) == bitstream.crc8(data[:n]) for n in range(len(data)))


def _leb128(value):
  out = b''
  while True:
    low, value = value & 0x7F, value >> 7
    if not value:
      return out + bytes([low])
    out += bytes([low | 0x80])


def _v2_file(entries, payload, fingerprint, *, chunk_bits=None, crcs=None, one_code=None,
             source_format=0, source_layer_depth=0, order=None, channel_causal=False,
             coder=bitstream.CODER_ID,
             version=2, extra_flags=0, chunk_count=None, seal=True):
  """docs/FORMAT.md's version-2 table, field by field. entries: (height, width, depth, samples,
  payload_words); chunk_bits (packed bits per chunk) gives the true chunk CRCs, crcs forges them
  (default zeros); seal=False leaves the header check zero."""
  if one_code is None:
    one_code = len(entries) == 1 and entries[0][3] == 1 and order is None
  flags = (int(channel_causal) | (2 if order is not None else 0) | source_format << 2
           | (0x10 if source_layer_depth else 0) | (0x20 if one_code else 0) | extra_flags)
  head = b'\x89NEC' + bytes([version, coder, flags]) + fingerprint
  if source_layer_depth:
    head += _leb128(source_layer_depth)
  if not one_code:
    head += _leb128(len(entries) if chunk_count is None else chunk_count)
  for height, width, depth, samples, words in entries:
    head += _leb128(height) + _leb128(width) + _leb128(depth)
    head += b'' if one_code else _leb128(samples)
    head += _leb128(words)
  if order is not None:
    head += b''.join(_leb128(i) for i in order)
  if chunk_bits is not None:
    crc, crcs = zlib.crc32(head), []
    for bits in chunk_bits:
      crc = zlib.crc32(bits, crc)
      crcs.append(crc)
  head += b''.join(struct.pack('<I', c) for c in (crcs if crcs is not None else [0] * len(entries)))
  return head + bytes([_crc8(head) if seal else 0]) + payload


def _entries(header):
  return [(c.height, c.width, c.depth, c.samples, c.payload_bytes // 4) for c in header.chunks]


def _fingerprint(data):
  return data[7:11]


def _header_check_at(data):
  """Offset of the header check of a version-2 file, walking its (possibly tampered) fields;
  None if the file ends first."""
  flags, offset = data[6], 11

  def number():
    nonlocal offset
    value, shift = 0, 0
    while offset < len(data):
      byte = data[offset]
      offset += 1
      value |= (byte & 0x7F) << shift
      shift += 7
      if byte < 0x80:
        return value
    raise IndexError

  try:
    if flags & 0x10:
      number()
    one = flags & 0x20
    count = 1 if one else number()
    if count * 12 > len(data):
      return None
    samples = 0
    for _ in range(count):
      number(), number(), number()
      samples += 1 if one else number()
      number()
    if flags & 0x02:
      if samples > len(data):
        return None
      for _ in range(samples):
        number()
  except IndexError:
    return None
  check_at = offset + 4 * count
  return check_at if check_at < len(data) else None


def _reseal(data):
  """A tampered file with its header check made valid again (as far as its fields say where
  the check is), so that only the deeper checks can catch the damage."""
  check_at = _header_check_at(data)
  if check_at is None or data[:4] != b'\x89NEC':
    return data
  return data[:check_at] + bytes([_crc8(data[:check_at])]) + data[check_at + 1:]


def test_the_bytes_are_the_documented_layout(model, codes, packed, one_code):
  """bitstream.pack writes exactly the table of docs/FORMAT.md, bit for bit."""
  header = codec.read_header(packed)
  payload = packed[header.header_size:]
  assert header.chunks == (bitstream.Chunk(5, 6, 4, 3, header.chunks[0].payload_bytes),
                           bitstream.Chunk(2, 3, 2, 1, header.chunks[1].payload_bytes))
  bits = [np.packbits(np.stack(codes[:3]).reshape(-1)).tobytes(),
          np.packbits(codes[3].reshape(-1)).tobytes()]
  fingerprint = bytes.fromhex(model.fingerprint)[:4]
  assert packed == _v2_file(_entries(header), payload, fingerprint, chunk_bits=bits)
  assert len(packed) - len(payload) == 11 + 1 + 2 * 5 + 2 * 4 + 1
  one = codec.read_header(one_code)
  first = [np.packbits(codes[0].reshape(-1)).tobytes()]
  assert one_code == _v2_file(_entries(one), one_code[one.header_size:], fingerprint,
                              chunk_bits=first)
  assert one.header_size == 11 + 4 + 4 + 1 and one.crc_checks == 1
  # A .npz source whose layer_depth is not the model's stores it; the model's is not stored.
  for layer_depth, stored in ((1, 1), (2, 0)):
    data = codec.compress(codes[:1], model, source_format=bitstream.SOURCE_NPZ,
                          source_layer_depth=layer_depth, format_version=2)
    header = codec.read_header(data)
    assert header.source_format == bitstream.SOURCE_NPZ and header.source_layer_depth == stored
    assert data == _v2_file(_entries(header), data[header.header_size:], fingerprint,
                            source_format=1, source_layer_depth=stored, chunk_bits=first)


# ---- damage ---------------------------------------------------------------------------------

def test_wrong_model_is_named(other_model, packed, one_code):
  for data in (packed, one_code):
    message = _error(data, other_model, 'codes.nec')
    assert 'different model' in message
    assert f'this model is {other_model.fingerprint[:8]}…' in message


def test_a_model_whose_fingerprint_prefix_collides_still_cannot_decode_silently(
    model, other_model, packed, one_code, codes):
  """The file names its model by 4 bytes of the fingerprint: should another model share them
  (p = 2^-32), the stream decodes to other codes and the chunk CRC32 refuses them."""
  forged_prefix = bytes.fromhex(other_model.fingerprint)[:4]
  for data, expected in ((packed, codes), (one_code, codes[:1])):
    forged = _reseal(data[:7] + forged_prefix + data[11:])
    assert codec.read_header(forged).model_matches(other_model.fingerprint)
    message = _error(forged, other_model)
    assert 'failed its CRC32 check' in message or 'compressed stream' in message, message
    assert _error_or_exact(data, model, expected) is None  # the original still decodes


def test_wrong_magic_and_version(model, packed):
  assert 'wrong magic' in _error(b'PK\x03\x04' + packed[4:], model)
  assert 'wrong magic' in _error(b'', model)
  newer = bytearray(packed)
  newer[4] = 5
  assert 'version 5 is not supported (this build reads versions 1, 2, 3, 4)' in _error(bytes(newer), model)
  other_coder = bytearray(packed)
  other_coder[5] = 99
  assert 'corrupt header' in _error(bytes(other_coder), model)  # damage: the check fails
  assert 'unknown coder id 99' in _error(_reseal(bytes(other_coder)), model)  # a real other coder


@pytest.mark.parametrize('which', ['packed', 'one_code'])
def test_every_truncation_is_reported(model, which, request):
  data = request.getfixturevalue(which)
  for length in range(0, len(data)):
    message = _error(data[:length], model)
    assert 'truncated' in message or 'magic' in message or 'corrupt' in message, (length, message)
  assert 'trailing bytes' in _error(data + b'\0', model)


@pytest.mark.parametrize('which', ['packed', 'one_code'])
def test_every_flipped_byte_is_reported_or_harmless(model, codes, which, request):
  """Each byte of the header, flipped, is refused before decoding (the header check); in the
  stream, the range coder or the chunk CRC32 refuses it, or it changed no decoded bit."""
  data = request.getfixturevalue(which)
  expected = codes if which == 'packed' else codes[:1]
  header_size = codec.read_header(data).header_size
  absorbed = 0
  for position in range(len(data)):
    for mask in (0x01, 0x10, 0x80):
      damaged = bytearray(data)
      damaged[position] ^= mask
      if position < header_size:
        with pytest.raises(UserError):
          codec.read_header(bytes(damaged))
      absorbed += _error_or_exact(bytes(damaged), model, expected) is None
  assert absorbed < 0.1 * 3 * (len(data) - header_size)


def test_stream_damage_is_caught_after_decoding(model, packed, codes):
  """No payload CRC: damage to a stream is caught by the range decoder (a stream that does not
  end where the code does) or by the chunk's CRC32 of the decoded bits."""
  header = codec.read_header(packed)
  messages = []
  for offset in range(header.header_size, len(packed)):
    damaged = bytearray(packed)
    damaged[offset] ^= 0x04
    messages.append(_error_or_exact(bytes(damaged), model, codes))
  assert any('failed its CRC32 check' in (m or '') for m in messages)
  assert sum(m is not None for m in messages) > 0.9 * len(messages)


def test_chunk_crc_mismatch_is_reported(model, packed, one_code):
  header = codec.read_header(packed)
  crc_at = header.header_size - 1 - 4 * len(header.chunks)
  for chunk, message in ((0, 'chunk 0 (3 codes of 5x6x4) failed its CRC32 check'),
                         (1, 'sample 3 failed its CRC32 check')):
    damaged = bytearray(packed)
    damaged[crc_at + 4 * chunk] ^= 0xFF
    assert 'corrupt header' in _error(bytes(damaged), model)
    assert message in _error(_reseal(bytes(damaged)), model)
  damaged = bytearray(one_code)
  damaged[codec.read_header(one_code).header_size - 5] ^= 0x01
  assert 'sample 0 failed its CRC32 check' in _error(_reseal(bytes(damaged)), model)


def test_header_damage_past_the_header_check_is_caught_by_the_crc32(model, codes, one_code):
  """The chunk CRC32s cover the header: a changed shape or source format that the 8-bit header
  check misses (here: re-sealed) cannot give a wrong code or a wrong kind of output file."""
  header = codec.read_header(one_code)
  payload = one_code[header.header_size:]
  fingerprint = _fingerprint(one_code)
  true_crc = [header.chunk_crc[0]]
  for entries, fields in [([(6, 5, 4, 1, len(payload) // 4)], {}),         # transposed shape
                          ([(5, 6, 2, 1, len(payload) // 4)], {}),         # fewer layers
                          (_entries(header), {'source_format': 1}),        # restored as .npz
                          (_entries(header), {'source_format': 1, 'source_layer_depth': 4}),
                          (_entries(header), {'source_format': 3})]:
    forged = _v2_file(entries, payload, fingerprint, crcs=true_crc, **fields)
    assert forged != one_code
    message = _error(forged, model)
    assert ('failed its CRC32 check' in message or 'compressed stream' in message), message


def test_issue_file_declaring_a_16384x16384x2_code_isrefused_fast(model, packed):
  """The file of the issue, in version 2: 1,041 bytes, a valid header check, one 16384x16384x2
  code (2^29 code bits): ~22 GB and 2^28 pixel steps if decoded."""
  data = _v2_file([(16384, 16384, 2, 1, 254)], noise(1016), _fingerprint(packed))
  assert len(data) == 1041
  message = refused_fast(data, model, 'cannot come from')
  assert f'at most {bitstream.max_code_bits(1016)}' in message


@pytest.mark.parametrize('entries, payload_bytes, fields, problem', [
    # huge declared shapes, each within the old bound of 2^16 symbols per payload bit
    ([(1, 65536, 16, 16, 256)], 1024, {}, 'cannot come from'),
    ([(65536, 1, 16, 16, 256)], 1024, {}, 'cannot come from'),
    ([(4096, 4096, 2, 1, 128), (2, 2, 2, 1, 1)], 516, {}, 'cannot come from'),
    # huge sample counts: 1,000 codes of 64x64x8 from a 1 KB stream
    ([(64, 64, 8, 1000, 256)], 1024, {}, 'cannot come from'),
    ([(1, 1, 16, 60000, 1)], 4, {}, 'cannot come from'),
    # the last chunk is the hostile one: refused before the first chunk is decoded
    ([(2, 2, 2, 1, 1)] * 20 + [(2048, 2048, 2, 1, 64)], 336, {}, 'cannot come from'),
    # an empty stream cannot hold a symbol (the coder writes at least one word per stream)
    ([(1000, 1000, 2, 1, 0), (2, 2, 2, 1, 2)], 8, {}, 'corrupt chunk table entry'),
    # zero or too large dimensions, no samples
    ([(0, 4, 2, 1, 1)], 4, {}, 'corrupt chunk table entry'),
    ([(65537, 1, 2, 1, 1)], 4, {}, 'corrupt chunk table entry'),
    ([(2, 2, 65537, 1, 1)], 4, {}, 'corrupt chunk table entry'),
    ([(2, 2, 2, 0, 1), (2, 2, 2, 1, 1)], 8, {}, 'corrupt chunk table entry'),
    # stream sizes that disagree with the file: the payload is exactly their sum
    ([(2, 2, 2, 1, 2), (2, 2, 2, 1, 2)], 8, {}, 'truncated'),
    ([(2, 2, 2, 1, 2), (2, 2, 2, 1, 2)], 24, {}, 'trailing bytes'),
    ([(2, 2, 2, 1, 1 << 61), (2, 2, 2, 1, 2)], 16, {}, 'truncated'),
    ([(2, 2, 2, 1, (1 << 64) - 1)], 16, {}, 'truncated'),
    # counts the file cannot hold: refused from the bytes left, before any loop or allocation
    ([(2, 2, 2, 1, 1)], 4, {'chunk_count': 1 << 40, 'one_code': False}, 'truncated'),
    ([(2, 2, 2, 1, 1)], 4, {'chunk_count': bitstream.MAX_SAMPLES, 'one_code': False}, 'truncated'),
    ([(1, 1, 2, bitstream.MAX_SAMPLES + 1, 1)], 4, {}, 'corrupt header'),
    ([(2, 2, 2, 1 << 40, 1)], 4, {'order': []}, 'truncated'),
    # flags: unknown bits, a layer_depth for a TFRecord source, one code with an order table
    ([(2, 2, 2, 1, 1)], 4, {'extra_flags': 0x40}, 'invalid flags'),
    ([(2, 2, 2, 1, 1)], 4, {'source_format': 2, 'source_layer_depth': 2}, 'invalid flags'),
    ([(2, 2, 2, 1, 1)], 4, {'one_code': True, 'order': [0]}, 'invalid flags'),
    # the sample order must be a permutation
    ([(2, 2, 2, 2, 1), (3, 3, 2, 1, 1)], 8, {'order': [1, 2, 1]}, 'not a permutation'),
    ([(2, 2, 2, 2, 1)], 4, {'order': [0, 2]}, 'not a permutation'),
])
def test_crafted_tables_with_valid_checks_arerefused_fast(model, packed, entries, payload_bytes,
                                                           fields, problem):
  refused_fast(_v2_file(entries, noise(payload_bytes), _fingerprint(packed), **fields), model,
                problem)


def test_numbers_must_be_in_their_shortest_form(model, packed):
  """A varint has one spelling: 0x81 0x00 (= 1) is refused, as is one longer than 64 bits."""
  entry = b'\x02\x02\x02\x81\x00\x01'  # samples 1 spelled in two bytes
  head = b'\x89NEC\x02\x01\x00' + _fingerprint(packed) + b'\x01' + entry + bytes(4)
  data = head + bytes([_crc8(head)]) + bytes(4)
  refused_fast(data, model, 'shortest form')
  head = b'\x89NEC\x02\x01\x00' + _fingerprint(packed) + b'\xff' * 11 + b'\x01'
  data = head + bytes(8)
  refused_fast(_reseal(data), model, 'longer than 64 bits')


def test_work_bound_holds_for_the_cheapest_streams_and_is_tight():
  """max_code_bits is an upper bound on what the encoder can put in a stream, and not a loose
  one: the cheapest possible symbols (the most probable value at the clip, both ways round)
  reach more than 85% of it."""
  from entropy_coder.codec.range_coder import StreamEncoder  # pylint: disable=g-import-not-at-top
  q_max = bitstream.MAX_SYMBOL_PROBABILITY
  for count in (1, 1000, 44038, 44039, 88077, 400_000, 3_000_000):
    for bit, p_one in ((1, q_max), (0, 1.0 - q_max)):
      encoder = StreamEncoder()
      encoder.encode(np.full(count, bit, np.int32), np.full(count, p_one))
      size = len(encoder.finish())
      assert 4 <= size and count <= bitstream.max_code_bits(size), (count, bit, size)
      if count >= 3_000_000:
        assert count > 0.85 * bitstream.max_code_bits(size), (count, size)
  # The number the docs quote: ~1,376 code bits per payload bit.
  assert 1376 < bitstream.MAX_CODE_BITS_PER_PAYLOAD_BIT < 1377


def test_work_bound_assumes_the_engines_clip():
  """The bound rests on the engine never giving a symbol more than MAX_SYMBOL_PROBABILITY."""
  import numba  # pylint: disable=g-import-not-at-top
  from entropy_coder.codec import engine  # pylint: disable=g-import-not-at-top

  @numba.njit
  def quantize(pred, p, q):
    engine._quantize(pred, p, q)  # pylint: disable=protected-access

  pred = np.array([-np.inf, -10, -1, -0.9991, -0.999, 0, 0.999, 0.9991, 1, 10, np.inf], np.float32)
  p_model, p_coded = np.empty(pred.size), np.empty(pred.size)
  quantize(pred, p_model, p_coded)
  assert p_coded.max() == bitstream.MAX_SYMBOL_PROBABILITY
  assert 1.0 - p_coded.min() == bitstream.MAX_SYMBOL_PROBABILITY


@pytest.mark.parametrize('shape, count', [((96, 80, 2), 2), ((24, 20, 16), 4)])
def test_decoding_memory_is_a_fixed_multiple_of_the_output(model, shape, count):
  """A real decode allocates a bounded multiple of its output (1 byte per code bit; ~53 bytes per
  code bit of engine state with one layer, less with more), so with the work bound a file of N
  bytes cannot make the decoder allocate more than a fixed multiple of N either."""
  codes = list(synthetic.generate_codes(seed=9, indices_or_start=0, count=count, shape=shape))
  data = codec.compress(codes, model, threads=1, format_version=2)
  codec.decompress(data, model, threads=1)  # numba dispatch warmed up
  tracemalloc.start()
  try:
    restored = codec.decompress(data, model, threads=1)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert all(np.array_equal(a, b) for a, b in zip(restored, codes))
  bits = sum(code.size for code in codes)
  assert bits <= bitstream.max_code_bits(len(data))
  assert peak < 64 * bits + (1 << 20), (peak, bits)


# Hostile values for the table fields: the edges of the format's limits and of 64 bits.
_HOSTILE = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 127, 128, 255, 256, 4095, 16384, 65535,
                                      65536, 65537, 1 << 24, (1 << 31) - 1, 1 << 32,
                                      bitstream.MAX_SAMPLES, 1 << 63, (1 << 64) - 1]),
                     st.integers(0, (1 << 64) - 1))


@hypothesis.settings(max_examples=100, deadline=5000,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_fuzzed_files_give_user_errors_only(model, packed, one_code, codes, data):
  """Random damage, raw or re-sealed with a valid header check (so that only the table checks,
  the work bound and the CRC32s stand between it and a wrong result): a one-line UserError or
  the exact input, fast."""
  one = data.draw(st.booleans())
  original, expected = (one_code, codes[:1]) if one else (packed, codes)
  damaged = bytearray(original)
  kind = data.draw(st.sampled_from(['flip', 'cut', 'insert', 'overwrite', 'shape', 'table',
                                    'tables']))
  position = data.draw(st.integers(0, len(original) - 1))
  if kind in RAW_DAMAGE:
    damage_raw(damaged, kind, position, data)
  else:
    # 'shape': a chunk's height or width anywhere up to MAX_DIM; 'table(s)': one or several
    # numbers of the table set to hostile values. Rewritten with the true chunk CRCs and sealed.
    header = codec.read_header(original)
    entries = [list(entry) for entry in _entries(header)]
    if kind == 'shape':
      big = bitstream.MAX_DIM
      entries[data.draw(st.integers(0, len(entries) - 1))][data.draw(st.integers(0, 1))] = (
          data.draw(st.integers(1, big) | st.sampled_from([2, 4096, big // 4, big // 2, big])))
    else:
      for _ in range(data.draw(st.integers(1, 1 if kind == 'table' else 4))):
        field = data.draw(st.integers(0, 3 if one else 4))
        field = field + 1 if one and field >= 3 else field  # a one-code file has no samples
        entries[data.draw(st.integers(0, len(entries) - 1))][field] = data.draw(_HOSTILE)
    damaged = bytearray(_v2_file([tuple(e) for e in entries], original[header.header_size:],
                                 _fingerprint(original), crcs=list(header.chunk_crc),
                                 one_code=one))
  if kind in ('flip', 'overwrite', 'insert', 'cut') and data.draw(st.booleans()):
    damaged = bytearray(_reseal(bytes(damaged)))
  if bytes(damaged) == original:
    return
  with bounded_by_the_file(damaged):
    _error_or_exact(bytes(damaged), model, expected)


@pytest.mark.parametrize('bad, problem', [
    (np.full((3, 3, 2), 2, np.uint8), 'only 0 and 1'),
    (np.zeros((3, 3, 3), np.uint8), 'not a multiple'),
    (np.zeros((3, 3, 18), np.uint8), 'at most 8'),
    (np.zeros((3, 3), np.uint8), '[H, W, D]'),
    (np.zeros((3, 3, 2), np.float32) + 0.5, 'only 0 and 1'),
])
def test_bad_codes_are_refused(model, bad, problem):
  with pytest.raises(UserError, match=problem.replace('[', r'\[').replace(']', r'\]')):
    codec.compress([np.zeros((2, 2, 2), np.uint8), bad], model)


def test_a_depth_the_model_cannot_decode_is_refused_before_decoding(model, packed):
  """Version 2 does not store the model's layer_depth (the fingerprint names the model): a depth
  that is no whole number of its layers is refused by the model's own check."""
  data = _v2_file([(2, 2, 3, 1, 1)], noise(4), _fingerprint(packed))
  codec.read_header(data)  # the container cannot know the model's layer_depth
  assert 'not a multiple' in _error(data, model)
  data = _v2_file([(2, 2, 18, 1, 1)], noise(4), _fingerprint(packed))
  assert 'at most 8' in _error(data, model)


def test_coded_layer_count_limits_what_the_model_can_code(model, tmp_path):
  model_files.write_model_files(str(tmp_path), model.weights,
                                dict(model.model_config, coded_layer_count=2))
  limited = model_files.read_model_files(str(tmp_path))
  codec.decompress(codec.compress([np.zeros((2, 2, 4), np.uint8)], limited), limited)
  with pytest.raises(UserError, match='coded_layer_count'):
    codec.compress([np.zeros((2, 2, 6), np.uint8)], limited)


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'entropy_coder.cli', *args], capture_output=True,
                        text=True, env=env, timeout=300, check=False)


def test_cli_errors_are_one_line_exit_2(model, packed, tmp_path):
  damaged = tmp_path / 'damaged.nec'
  damaged.write_bytes(packed[:-3])
  done = _cli('decompress', '--model', model.path, str(damaged), '-o', str(tmp_path / 'out.tfrecord'))
  assert done.returncode == 2
  assert done.stderr.strip().count('\n') == 0 and 'damaged.nec: truncated' in done.stderr
  assert done.stdout == ''
  not_a_model = tmp_path / 'empty_dir'
  not_a_model.mkdir()
  done = _cli('compress', '--model', str(not_a_model), str(damaged), '-o', str(tmp_path / 'x.nec'))
  assert done.returncode == 2 and 'not an entropy-coder model directory' in done.stderr
  done = _cli('decompress', '--model', model.path, str(tmp_path / 'missing.nec'), '-o',
              str(tmp_path / 'x'))
  assert done.returncode == 2 and 'missing.nec' in done.stderr
  done = _cli('decompress', '--model', model.path, str(damaged), '-o', str(damaged))
  assert done.returncode == 2 and 'exists; pass --overwrite' in done.stderr
  assert damaged.read_bytes() == packed[:-3]


def test_sample_order_is_restored_and_must_be_a_permutation(model):
  mixed = [np.zeros((2, 2, 2), np.uint8), np.ones((3, 3, 2), np.uint8), np.ones((2, 2, 2), np.uint8)]
  data = codec.compress(mixed, model, format_version=2)
  header = codec.read_header(data)
  assert header.sample_index == (0, 2, 1)  # coded by shape, restored to the input order
  restored = codec.decompress(data, model)
  assert all(np.array_equal(a, b) for a, b in zip(restored, mixed))
  forged = _v2_file(_entries(header), data[header.header_size:], _fingerprint(data),
                    crcs=list(header.chunk_crc), order=[1, 2, 1])
  assert 'not a permutation' in _error(forged, model)
  # Another permutation, re-sealed: the restored order would be wrong; the CRC32s cover it.
  forged = _v2_file(_entries(header), data[header.header_size:], _fingerprint(data),
                    crcs=list(header.chunk_crc), order=[2, 0, 1])
  assert 'failed its CRC32 check' in _error(forged, model)
