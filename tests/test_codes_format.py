"""Round trips of every code format, and every bad `.npz` refused with a UserError naming it."""
import gzip
import io
import os

import numpy as np
import pytest

from entropy_coder import codes_format
from entropy_coder.data_gen import example_wire
from entropy_coder.data_gen import synthetic
from entropy_coder.data_gen import tfrecord_files
from entropy_coder.errors import UserError

_SHAPES = [(35, 48, 8), (31, 36, 8), (1, 1, 1), (3, 5, 7), (2, 9, 3)]


def _codes(shape, count=3, seed=3):
  return synthetic.generate_codes(seed, 0, count, shape=shape)


def _write_tf_records(path, records, compression):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path, options=compression) as writer:
    for record in records:
      writer.write(record)


@pytest.mark.parametrize('shape', _SHAPES)
def test_our_example_round_trip_and_wire_bytes_equal_tensorflows(shape):
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  for index, code in enumerate(_codes(shape)):
    np.testing.assert_array_equal(codes_format.decode_example(codes_format.encode_example(code)),
                                  code)
    for sample_index in (None, index, 2**40 + index):
      wire = example_wire.encode_example(code, sample_index)
      reference = example_pb2.Example.FromString(codes_format.encode_example(code))
      if sample_index is not None:
        reference.features.feature[codes_format.FEATURE_SAMPLE_INDEX].int64_list.value.append(
            sample_index)
      assert wire == reference.SerializeToString(deterministic=True)
      np.testing.assert_array_equal(codes_format.decode_example(wire), code)
  codes = _codes(shape)
  assert example_wire.encode_batch(codes, [5, 6, 7]) == [
      example_wire.encode_example(code, index) for code, index in zip(codes, [5, 6, 7])]
  assert example_wire.encode_batch(codes) == [example_wire.encode_example(c) for c in codes]


def test_tensorflow_parses_our_examples_and_ignores_sample_index():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  code = _codes((5, 6, 4), count=1)[0]
  serialized = example_wire.encode_example(code, 17)
  spec = {codes_format.FEATURE_CODE: tf.io.FixedLenFeature([], tf.string),
          codes_format.FEATURE_SHAPE: tf.io.FixedLenFeature([3], tf.int64)}
  parsed = tf.io.parse_single_example(serialized, spec)
  assert parsed[codes_format.FEATURE_SHAPE].numpy().tolist() == [5, 6, 4]
  np.testing.assert_array_equal(
      codes_format.unpack_code(parsed[codes_format.FEATURE_CODE].numpy(), (5, 6, 4)), code)
  spec[codes_format.FEATURE_SAMPLE_INDEX] = tf.io.FixedLenFeature([], tf.int64)
  assert tf.io.parse_single_example(serialized, spec)[
      codes_format.FEATURE_SAMPLE_INDEX].numpy() == 17


@pytest.mark.parametrize('compression', ['', 'GZIP'])
def test_originals_float_layout_reads_back(tmp_path, compression):
  """The original wrote plain TFRecords of FloatList +-1 codes; we read them (and GZIP ones)."""
  codes = _codes((4, 6, 3))
  path = str(tmp_path / 'synthetic_dataset')
  _write_tf_records(path, [codes_format.encode_original_example(c) for c in codes], compression)
  read = [code for _, code in codes_format.iter_tfrecord_codes([path])]
  np.testing.assert_array_equal(np.stack(read), codes)


def test_our_tfrecord_writer_is_read_by_tensorflow(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  codes = _codes((7, 8, 2), count=5)
  records = [example_wire.encode_example(c, i) for i, c in enumerate(codes)]
  path = str(tmp_path / 'data.tfrecord.gz')
  assert tfrecord_files.write_gzip_tfrecords(path, records) == 5
  read = [r.numpy() for r in tf.data.TFRecordDataset([path], compression_type='GZIP')]
  assert read == records
  np.testing.assert_array_equal(
      np.stack([c for _, c in codes_format.iter_tfrecord_codes([path])]), codes)
  # Same records, same bytes (no time stamp in the GZIP header).
  again = str(tmp_path / 'again.tfrecord.gz')
  tfrecord_files.write_gzip_tfrecords(again, records)
  assert open(path, 'rb').read() == open(again, 'rb').read()


def test_a_corrupt_record_is_a_user_error(tmp_path):
  record = example_wire.encode_example(_codes((3, 3, 3), count=1)[0])
  framed = bytearray(tfrecord_files.frame_record(record))
  framed[20] ^= 0x01  # a data byte: the data CRC no longer matches
  path = str(tmp_path / 'bad.tfrecord.gz')
  with open(path, 'wb') as f:
    f.write(gzip.compress(bytes(framed)))
  with pytest.raises(UserError, match='bad.tfrecord.gz'):
    list(codes_format.iter_tfrecord_codes([path]))


def _originals_npz_bytes(code, layer_depth):
  """What the original gen_synthetic_single.py wrote (docs/ORIGINAL.md §2), redone independently."""
  height, width, _ = code.shape
  ordered = np.transpose(code.reshape([1, height, width, -1, layer_depth]), [3, 0, 1, 2, 4])
  int_codes = ordered.astype(np.int8)
  out = io.BytesIO()
  np.savez_compressed(out, shape=int_codes.shape, codes=np.packbits(int_codes.reshape(-1)))
  return out.getvalue()


@pytest.mark.parametrize('shape,layer_depth', [((31, 36, 8), 2), ((3, 5, 4), 1), ((3, 5, 4), 4),
                                               ((3, 3, 3), 3), ((2, 7, 6), 2)])
def test_npz_round_trip_in_the_originals_layout(tmp_path, shape, layer_depth):
  code = _codes(shape, count=1)[0]
  ours = str(tmp_path / 'ours.npz')
  codes_format.write_npz(ours, code, layer_depth)
  read, read_depth = codes_format.read_npz(ours)
  np.testing.assert_array_equal(read, code)
  assert read_depth == layer_depth
  original = tmp_path / 'original.npz'
  original.write_bytes(_originals_npz_bytes(code, layer_depth))
  with np.load(ours) as a, np.load(str(original)) as b:
    np.testing.assert_array_equal(a['shape'], b['shape'])
    np.testing.assert_array_equal(a['codes'], b['codes'])
  np.testing.assert_array_equal(codes_format.read_npz(str(original))[0], code)


def _save(path, **arrays):
  np.savez(path, **arrays)
  return path


_GOOD_SHAPE = np.array([4, 1, 3, 5, 2])
_GOOD_CODES = np.packbits(np.ones(120, np.uint8))


@pytest.mark.parametrize('name,write,problem', [
    ('missing_key', lambda p: _save(p, shape=_GOOD_SHAPE), 'expected keys'),
    ('extra_key', lambda p: _save(p, shape=_GOOD_SHAPE, codes=_GOOD_CODES, extra=np.zeros(1)),
     'expected keys'),
    ('wrong_product', lambda p: _save(p, shape=np.array([4, 1, 3, 5, 3]), codes=_GOOD_CODES),
     'bytes'),
    ('shape_not_5', lambda p: _save(p, shape=np.array([3, 5, 8]), codes=_GOOD_CODES), 'shape'),
    ('non_binary', lambda p: _save(p, shape=_GOOD_SHAPE, codes=np.array([0, 1, 2] * 40, np.int8)),
     'non-binary'),
    ('float_codes', lambda p: _save(p, shape=_GOOD_SHAPE, codes=np.ones(15, np.float32)),
     'uint8'),
    ('padding_bits', lambda p: _save(p, shape=np.array([1, 1, 1, 1, 3]),
                                     codes=np.array([0xFF], np.uint8)), 'padding'),
    ('pickled_object', lambda p: np.savez(p, shape=_GOOD_SHAPE,
                                          codes=np.array([{'evil': 1}], dtype=object)), 'pickle'),
    ('not_a_zip', lambda p: open(p, 'w').write('just text'), 'not a .npz'),
    ('npy_not_npz', lambda p: np.save(open(p, 'wb'), np.zeros(3)), 'not a .npz'),
    ('truncated', lambda p: open(p, 'wb').write(_originals_npz_bytes(
        np.ones((3, 5, 8), np.uint8), 2)[:100]), 'not a .npz'),
])
def test_bad_npz_is_a_user_error_naming_the_file(tmp_path, name, write, problem):
  path = str(tmp_path / f'{name}.npz')
  write(path)
  with pytest.raises(UserError) as error:
    codes_format.read_npz(path)
  message = str(error.value)
  assert path in message and problem in message and '\n' not in message


def test_missing_npz_is_a_user_error(tmp_path):
  path = str(tmp_path / 'nowhere.npz')
  with pytest.raises(UserError, match='nowhere.npz: no such file'):
    codes_format.read_npz(path)


def test_pickled_npz_is_never_executed(tmp_path):
  marker = tmp_path / 'executed'

  class Payload:
    def __reduce__(self):
      return (open, (str(marker), 'w'))

  path = str(tmp_path / 'evil.npz')
  np.savez(path, shape=_GOOD_SHAPE, codes=np.array([Payload()], dtype=object))
  with pytest.raises(UserError):
    codes_format.read_npz(path)
  assert not os.path.exists(marker)
