"""Damaged files, wrong models and bad codes: one-line UserErrors, never a hang or wrong output."""
import os
import struct
import subprocess
import sys
import zlib

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from helpers import REFERENCE_DIR
from entropy_coder import codec, model_files
from entropy_coder.codec import bitstream
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError



@pytest.fixture(scope='module')
def model(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp('reference_model'))
  weights = dict(np.load(os.path.join(REFERENCE_DIR, 'weights_step25284.npz'), allow_pickle=False))
  model_files.write_model_files(model_dir, weights, {'layer_depth': 2, 'layer_count': 8})
  return model_files.read_model_files(model_dir)


@pytest.fixture(scope='module')
def codes():
  return list(synthetic.generate_codes(seed=4, indices_or_start=0, count=3, shape=(5, 6, 4))) + [
      np.ones((2, 3, 2), np.uint8)]


@pytest.fixture(scope='module')
def packed(model, codes):
  return codec.compress(codes, model)


def _error(data, model, source='damaged.nec'):
  with pytest.raises(UserError) as caught:
    codec.decompress(data, model, source=source)
  message = str(caught.value)
  assert '\n' not in message and message.startswith(source)
  return message


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
  newer[8:10] = struct.pack('<H', bitstream.VERSION + 1)
  assert f'version {bitstream.VERSION + 1} is not supported' in _error(bytes(newer), model)
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
  header_size = codec.read_header(original).header_size - bitstream.CRC.size
  payload = data[header_size + bitstream.CRC.size:]
  head = bytearray(data[:header_size])
  struct.pack_into('<I', head, bitstream.PAYLOAD_CRC_OFFSET, zlib.crc32(payload))
  return bytes(head) + bitstream.CRC.pack(zlib.crc32(bytes(head))) + payload


def _chunk_offset(field):
  """Byte offset of a field (0 height, 1 width, 2 depth, 3 samples) of chunk 0's table entry."""
  return bitstream.FIXED_HEADER.size + 4 * field


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
  crc_offset = bitstream.FIXED_HEADER.size + bitstream.CHUNK_ENTRY.size * len(header.chunks)
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


@hypothesis.settings(max_examples=60, deadline=5000,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_fuzzed_files_give_user_errors_only(model, packed, codes, data):
  damaged = bytearray(packed)
  kind = data.draw(st.sampled_from(['flip', 'cut', 'insert', 'overwrite']))
  position = data.draw(st.integers(0, len(packed) - 1))
  if kind == 'flip':
    damaged[position] ^= data.draw(st.integers(1, 255))
  elif kind == 'cut':
    del damaged[position:position + data.draw(st.integers(1, 16))]
  elif kind == 'insert':
    damaged[position:position] = data.draw(st.binary(min_size=1, max_size=8))
  else:
    chunk = data.draw(st.binary(min_size=1, max_size=8))
    damaged[position:position + len(chunk)] = chunk
  if bytes(damaged) == packed:
    return
  try:
    restored = codec.decompress(bytes(damaged), model)
  except UserError as e:
    assert '\n' not in str(e)
    return
  assert all(np.array_equal(a, b) for a, b in zip(restored, codes))


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


def test_sample_order_table_must_be_a_permutation(model):
  mixed = [np.zeros((2, 2, 2), np.uint8), np.ones((3, 3, 2), np.uint8), np.ones((2, 2, 2), np.uint8)]
  data = codec.compress(mixed, model)
  header = codec.read_header(data)
  assert header.sample_index == (0, 2, 1)  # coded by shape, restored to the input order
  order_offset = (bitstream.FIXED_HEADER.size + bitstream.CHUNK_ENTRY.size * len(header.chunks)
                  + bitstream.SAMPLE_ENTRY.size * 3)
  damaged = bytearray(data)
  struct.pack_into('<I', damaged, order_offset, 1)  # order 1, 2, 1
  assert 'not a permutation' in _error(_recrc(bytes(damaged), data), model)
