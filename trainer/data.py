"""tf.data input of codes for training and evaluation, from TFRecord files of tf.Examples.

Like the original (`unique_code_size: true`) a dataset has one code shape: it is read from the
first record (the original's ReadFirstCode) and becomes the static shape of every batch, which
keeps the graph small and fast. Records of another shape fail with a message naming the shape.
Both our packed layout and the original's float layout are read (entropy_coder.codes_format).
"""
import numpy as np
import tensorflow as tf

from entropy_coder import codes_format
from entropy_coder.errors import UserError


def list_files(patterns):
  """Expands glob patterns (TFX hands the Trainer `Split-train/*`) into a sorted file list."""
  if isinstance(patterns, str):
    patterns = [patterns]
  files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
  if not files:
    raise UserError(f'{", ".join(patterns)}: no TFRecord files match')
  return files


def first_code(files):
  """(shape, is_packed_layout, compression) of the first record, checked like any record."""
  for path in files:
    if tf.io.gfile.isdir(path):
      raise UserError(f'{path}: is a directory; expected a TFRecord file')
    compression = 'GZIP' if codes_format.is_gzip(path) else ''
    try:
      records = list(tf.data.TFRecordDataset([path], compression_type=compression).take(1))
    except tf.errors.OpError as e:
      text = ' '.join(codes_format.tf_error_text(e).split())
      raise UserError(f'{path}: not a readable {"GZIP " if compression else ""}TFRecord file '
                      f'({text})') from None
    for record in records:
      serialized = record.numpy()
      code = codes_format.decode_example(serialized, f'{path} record 0')
      return code.shape, _is_packed(serialized), compression
  raise UserError(f'{files[0]}: the TFRecord files hold no records')


def _is_packed(serialized):
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  example = example_pb2.Example.FromString(serialized)
  return example.features.feature[codes_format.FEATURE_CODE].WhichOneof('kind') == 'bytes_list'


def unpack_bits(packed, count):
  """uint8 [..., n_bytes] -> float32 [..., count] of {0,1}, MSB first (np.unpackbits order)."""
  shifts = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.uint8)
  bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed[..., None], shifts), 1)
  bits = tf.reshape(bits, tf.concat([tf.shape(packed)[:-1], [-1]], 0))
  return tf.cast(bits[..., :count], tf.float32)


def parse_packed_batch(serialized, shape=None):
  """Serialized Examples [B] (our layout, all one shape) -> float32 {0,1} codes [B, H, W, D].

  With `shape=None` (serving: any shape) the shape comes from the first record's `code_shape`.
  """
  features = tf.io.parse_example(serialized, {
      codes_format.FEATURE_CODE: tf.io.FixedLenFeature([], tf.string),
      codes_format.FEATURE_SHAPE: tf.io.FixedLenFeature([3], tf.int64),
  })
  code_shape = tf.cast(features[codes_format.FEATURE_SHAPE], tf.int32)
  target = tf.constant(shape, tf.int32) if shape is not None else code_shape[0]
  tf.debugging.assert_equal(code_shape, tf.broadcast_to(target, tf.shape(code_shape)),
                            message='all codes of a batch must have one code_shape')
  packed = tf.io.decode_raw(features[codes_format.FEATURE_CODE], tf.uint8)
  bits = unpack_bits(packed, tf.reduce_prod(target))
  out_shape = tf.concat([tf.shape(serialized)[:1], target], 0)
  bits = tf.reshape(bits, out_shape)
  if shape is not None:
    bits = tf.ensure_shape(bits, [None] + list(shape))
  return bits


def _parse_float_batch(serialized, shape):
  features = tf.io.parse_example(serialized, {
      codes_format.FEATURE_CODE: tf.io.FixedLenFeature([int(np.prod(shape))], tf.float32),
      codes_format.FEATURE_SHAPE: tf.io.FixedLenFeature([3], tf.int64),
  })
  bits = tf.cast(features[codes_format.FEATURE_CODE] > 0, tf.float32)
  return tf.reshape(bits, [-1] + list(shape))


def code_dataset(patterns, batch_size, shuffle_seed=None, repeat=False, drop_remainder=False,
                 skip_batches=0):
  """A dataset of float32 {0,1} code batches [B, H, W, D] and the code shape (H, W, D).

  Training shuffles with a seed (the original did not shuffle at all) and repeats forever;
  evaluation reads every record once, in file order. `skip_batches` drops the first batches
  before they are parsed, so a resumed run continues the same seeded order where it stopped.
  """
  files = list_files(patterns)
  shape, packed, compression = first_code(files)
  dataset = tf.data.TFRecordDataset(files, compression_type=compression)
  if repeat:
    dataset = dataset.repeat()
  if shuffle_seed is not None:
    dataset = dataset.shuffle(4096, seed=shuffle_seed, reshuffle_each_iteration=True)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  if skip_batches:
    dataset = dataset.skip(skip_batches)
  parse = parse_packed_batch if packed else _parse_float_batch
  dataset = dataset.map(lambda s: parse(s, shape), num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE), tuple(shape)


