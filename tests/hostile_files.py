"""What the codec's hostile-file tests share, for both container versions (test_codec_errors.py
for version 2, test_codec_errors_v1.py for version 1): the refusal check and the raw damage."""
import contextlib
import time
import tracemalloc

import hypothesis.strategies as st
import numpy as np
import pytest

from entropy_coder import codec
from entropy_coder.codec import bitstream
from entropy_coder.errors import UserError


def refused_fast(data, model, problem):
  """decompress refuses `data` with a one-line UserError naming `problem`, in well under a
  second, without a big allocation and before any decoding (the progress callback never runs)."""
  calls = []
  tracemalloc.start()
  started = time.perf_counter()
  try:
    with pytest.raises(UserError) as caught:
      codec.decompress(data, model, progress=lambda done, _: calls.append(done), source='x.nec')
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  message = str(caught.value)
  assert '\n' not in message and message.startswith('x.nec: ') and problem in message, message
  assert elapsed < 0.5, elapsed
  assert peak < 4 * len(data) + (4 << 20), peak  # the file, a copy, a few MB of model
  assert not calls
  with pytest.raises(UserError, match=problem.replace('(', r'\(')):
    codec.read_header(data, 'x.nec')  # refused by the container checks alone
  return message


def sample_codes():
  """The codes both versions' hostile files are made of: 3 of 5x6x4 and 1 of 2x3x2 (two chunks)."""
  from entropy_coder.data_gen import synthetic  # pylint: disable=g-import-not-at-top
  return list(synthetic.generate_codes(seed=4, indices_or_start=0, count=3, shape=(5, 6, 4))) + [
      np.ones((2, 3, 2), np.uint8)]


def table_offset(header):
  """Where a one-code file's table after the shape (methods, segment lengths, stream length)
  starts: byte 11 plus the shape's varints."""
  chunk = header.chunks[0]
  return bitstream.HEAD.size + sum(len(bitstream.varint(n))
                                   for n in (chunk.height, chunk.width, chunk.depth))


def with_table(data, table, payload_change=0):
  """The one-code file `data` (versions 2-4) with its table after the shape replaced by `table`
  and its payload grown (zero bytes) or cut by payload_change, every check byte valid."""
  header = codec.read_header(bytes(data))
  crc_at = header.header_size - bitstream.HEADER_CHECK.size - bitstream.CHUNK_CRC.size
  payload = bytes(data[header.header_size:])
  payload = payload + bytes(payload_change) if payload_change >= 0 else payload[:payload_change]
  head = bytes(data[:table_offset(header)]) + bytes(table) + bytes(data[crc_at:crc_at + 4])
  return head + bytes([bitstream.crc8(head)]) + payload


def error_of(data, model, source='damaged.nec'):
  """decompress's one-line UserError for `data`, which names `source`."""
  with pytest.raises(UserError) as caught:
    codec.decompress(data, model, source=source)
  message = str(caught.value)
  assert '\n' not in message and message.startswith(source)
  return message


@contextlib.contextmanager
def bounded_by_the_file(damaged):
  """Whatever decoding runs inside the `with` costs work and memory bounded by the file: a file
  the container checks refuse allocates nothing big; one they accept declares at most what its
  streams and segments can hold (bitstream.chunk_capacity), and decoding holds ~53 bytes of
  engine state per declared code bit (plus the model)."""
  started = time.perf_counter()
  tracemalloc.start()
  try:
    yield
  finally:
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    try:
      header = codec.read_header(damaged)
      backed = sum(bitstream.chunk_capacity(c, header.version) for c in header.chunks)
    except UserError:
      backed = 0
    assert elapsed < 3.0
    assert peak < 64 * backed + (1 << 20), (peak, backed)


_RANDOM = np.random.default_rng(5)


def noise(size):
  return _RANDOM.integers(0, 256, size, dtype=np.uint8).tobytes()


RAW_DAMAGE = ('flip', 'cut', 'insert', 'overwrite')


def damage_raw(damaged, kind, position, data):
  """Applies one of RAW_DAMAGE at `position` of the bytearray `damaged` (hypothesis `data`
  draws the details); CRCs are left as they are."""
  if kind == 'flip':
    damaged[position] ^= data.draw(st.integers(1, 255))
  elif kind == 'cut':
    del damaged[position:position + data.draw(st.integers(1, 16))]
  elif kind == 'insert':
    damaged[position:position] = data.draw(st.binary(min_size=1, max_size=8))
  elif kind == 'overwrite':
    chunk = data.draw(st.binary(min_size=1, max_size=8))
    damaged[position:position + len(chunk)] = chunk
  else:
    raise ValueError(kind)

