"""tf.data input of codes for training and evaluation, from TFRecord files of tf.Examples.

A dataset may mix codes of any H x W (one depth D, which must fit the model). `code_shapes`
reads every record's `code_shape` before training, so a bad record or a depth the model cannot
code fails at once. Then:

* one shape and no smaller `crop` (the original's `unique_code_size: true` case): batches of
  whole codes of that static shape, parsed a batch at a time, exactly as before;
* otherwise training runs on tiles (`training_tiles`): every epoch cuts every code into a grid
  of `crop` x `crop` tiles whose seams move by a per-epoch seeded offset; edge tiles are
  shifted inside the code (they overlap their neighbour) so that EVERY bit of every code is in
  a tile EVERY epoch. A code shorter than the crop in a dimension is tiled there with the
  largest of crop/2, crop/4, ... that fits (`tile_sides`); tiles are batched with tiles of their own shape (`group_by_window`), so every batch
  has one shape and a train step is traced once per tile shape (a handful);
* evaluation (`eval_dataset`) always sees whole codes, batched by exact shape, so a code's
  figure is the one it has alone (docs/DESIGN.md, "Mixed shapes").

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




# Tile side for a training set of several shapes when the train config sets no `crop` (0).
DEFAULT_MIXED_CROP = 32
# Tiles shuffled across codes before they are grouped into batches of one shape.
_TILE_SHUFFLE = 2048
# Records are shuffled per epoch in blocks of this many (stateless: `_epoch_shuffled`).
_RECORD_SHUFFLE_BLOCK = 4096


def _epoch_shuffled(records, seed, epoch):
  """The serialized records in an order drawn from (seed, epoch) alone: each block of
  _RECORD_SHUFFLE_BLOCK records is permuted by a stateless random key. Dataset.shuffle with a
  seed that is a tensor (the epoch) fails once a global seed is set (tf.random.set_seed, as a
  Keras program in the same process may call), and its order depends on that global seed;
  stateless keys depend on neither."""
  blocks = records.batch(_RECORD_SHUFFLE_BLOCK).enumerate()

  def permuted(block_index, block):
    keys = tf.random.stateless_uniform(
        tf.shape(block), seed=tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch, block_index]))
    return tf.data.Dataset.from_tensor_slices(tf.gather(block, tf.argsort(keys)))

  return blocks.flat_map(permuted)


def _feature_specs(packed):
  code = (tf.io.FixedLenFeature([], tf.string) if packed else tf.io.VarLenFeature(tf.float32))
  return {codes_format.FEATURE_CODE: code,
          codes_format.FEATURE_SHAPE: tf.io.FixedLenFeature([3], tf.int64)}


def parse_one(serialized, packed, depth):
  """One serialized Example -> float32 {0,1} code [H, W, depth], H and W its own."""
  features = tf.io.parse_single_example(serialized, _feature_specs(packed))
  shape = tf.cast(features[codes_format.FEATURE_SHAPE], tf.int32)
  tf.debugging.assert_equal(shape[2], depth, message=f'every code must have depth {depth}')
  if packed:
    bits = unpack_bits(tf.io.decode_raw(features[codes_format.FEATURE_CODE], tf.uint8),
                       tf.reduce_prod(shape))
  else:
    bits = tf.cast(tf.sparse.to_dense(features[codes_format.FEATURE_CODE]) > 0, tf.float32)
  return tf.ensure_shape(tf.reshape(bits, shape), [None, None, depth])


def code_shapes(patterns):
  """Every record's (H, W, D), in file order: one pass reading only `code_shape`.

  -> (shapes, files, is_packed_layout, compression). The first record of the first file is
  fully checked (first_code); a file that is not a TFRecord is a one-line UserError.
  """
  files = list_files(patterns)
  _, packed, compression = first_code(files)
  shapes = []
  for path in files:
    records = tf.data.TFRecordDataset([path], compression_type=compression).batch(1024)
    spec = {codes_format.FEATURE_SHAPE: tf.io.FixedLenFeature([3], tf.int64)}
    try:
      for batch in records:
        shapes.extend(tuple(int(v) for v in row)
                      for row in tf.io.parse_example(batch, spec)[codes_format.FEATURE_SHAPE].numpy())
    except tf.errors.OpError as e:
      text = ' '.join(codes_format.tf_error_text(e).split())
      raise UserError(f'{path}: a record without a valid code_shape ({text[:200]})') from None
  for shape in shapes:
    codes_format.check_shape(shape, files[0])
  return shapes, files, packed, compression


def tile_size(shapes, crop):
  """The training tile side for a dataset of `shapes`, or None for whole codes.

  crop > 0 tiles any dataset whose codes exceed it; crop 0 (the default) keeps whole codes
  when the dataset has one shape, else tiles of DEFAULT_MIXED_CROP.
  """
  if crop == 0:
    return None if len(set(shapes)) == 1 else DEFAULT_MIXED_CROP
  if all(h <= crop and w <= crop for h, w, _ in shapes) and len(set(shapes)) == 1:
    return None
  return crop


def tile_starts(size, tile, offset):
  """Starts of the tiles covering [0, size) with seams at offset - tile + k * tile, edge tiles
  shifted inside: int32 [n], increasing, every index in [0, size) in some tile."""
  starts = tf.clip_by_value(tf.range(-offset, size, tile), 0, size - tile)
  return tf.unique(starts)[0]


def epoch_offsets(seed, epoch, tile_shape):
  """The seams' offset (oy, ox) of an epoch, each in [0, tile): deterministic in (seed, epoch)."""
  u = tf.random.stateless_uniform([2], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
  return tf.minimum(tf.cast(u * tf.cast(tile_shape, tf.float32), tf.int32), tile_shape - 1)


def tile_sides(sides, tile):
  """The tile side along a dimension of each size in `sides` (int32): `tile` where the code is
  at least that long, else the largest of tile // 2, tile // 4, ... that fits. Few distinct
  tile shapes (batches fill, the train step traces a handful of times), every one covering its
  code with shifted edge tiles."""
  halvings = tile // tf.bitwise.left_shift(1, tf.range(31))  # tile, tile // 2, ..., 0
  fits = halvings[None, :] <= sides[:, None]
  return tf.reduce_max(tf.where(fits, halvings[None, :], 0), axis=1)


def code_tiles(code, tile, seed, epoch):
  """[H, W, D] code -> its tiles of one epoch [n, th, tw, D], (th, tw) = tile_sides(H, W)."""
  shape = tf.shape(code)
  tile_shape = tile_sides(shape[:2], tile)
  oy, ox = tf.unstack(epoch_offsets(seed, epoch, tile_shape))
  rows = tile_starts(shape[0], tile_shape[0], oy)[:, None] + tf.range(tile_shape[0])
  cols = tile_starts(shape[1], tile_shape[1], ox)[:, None] + tf.range(tile_shape[1])
  tiles = tf.gather(tf.gather(code, rows), cols, axis=2)  # [ny, th, nx, tw, D]
  tiles = tf.transpose(tiles, [0, 2, 1, 3, 4])
  return tf.reshape(tiles, tf.concat([[-1], tile_shape, shape[2:]], 0))


_KEY_SHIFT = 1 << 31
# Batches of tiles smaller than the crop hold up to this many times batch_size tiles.
MAX_BATCH_MULTIPLE = 4


def _shape_key(tensor):
  shape = tf.cast(tf.shape(tensor), tf.int64)
  return shape[0] * _KEY_SHIFT + shape[1]


def tile_batch_size(key, batch_size, tile):
  """Tiles per batch for the tile shape `key` (_shape_key): batch_size crop x crop tiles, or
  about as many bits of smaller tiles (batch_size times crop^2 / (th * tw), at most
  MAX_BATCH_MULTIPLE times), so that a step's fixed cost is spread over as many bits."""
  area = (key // _KEY_SHIFT) * (key % _KEY_SHIFT)
  multiple = tf.clip_by_value(tile * tile // tf.maximum(area, 1), 1, MAX_BATCH_MULTIPLE)
  return tf.cast(batch_size, tf.int64) * multiple


def training_tiles(files, packed, compression, depth, batch_size, tile, seed, first_epoch=0):
  """Endless batches [B, th, tw, D] of the tiles of every code, epoch after epoch (see the
  module docstring); B = tile_batch_size. Records are shuffled per epoch with a seed derived
  from (seed, epoch)."""
  records = tf.data.TFRecordDataset(files, compression_type=compression)

  def epoch_records(epoch):
    shuffled = _epoch_shuffled(records, seed, epoch)
    return shuffled.map(lambda r: (parse_one(r, packed, depth), epoch))

  dataset = tf.data.Dataset.counter(first_epoch).flat_map(epoch_records)
  dataset = dataset.flat_map(lambda code, epoch: tf.data.Dataset.from_tensor_slices(
      code_tiles(code, tile, seed, epoch)))
  dataset = dataset.shuffle(_TILE_SHUFFLE, seed=seed, reshuffle_each_iteration=False)
  size_of = lambda key: tile_batch_size(key, batch_size, tile)  # pylint: disable=unnecessary-lambda-assignment
  return dataset.group_by_window(
      key_func=_shape_key,
      reduce_func=lambda key, tiles: tiles.batch(size_of(key), drop_remainder=True),
      window_size_func=size_of)


def eval_dataset(patterns, batch_size):
  """Whole codes, each once, batched with codes of its exact shape: -> (dataset, shapes).

  One shape: the static-shape batches of code_dataset. Several: batches [B, H, W, D] of one
  (H, W) each, so every code is computed exactly as alone (the model has no cross-example op).
  """
  shapes, files, packed, compression = code_shapes(patterns)
  if len(set(shapes)) == 1:
    return code_dataset(files, batch_size)[0], shapes
  depth = shapes[0][2]
  dataset = tf.data.TFRecordDataset(files, compression_type=compression)
  dataset = dataset.map(lambda r: parse_one(r, packed, depth))
  dataset = dataset.group_by_window(
      key_func=_shape_key, reduce_func=lambda _, codes: codes.batch(batch_size),
      window_size=batch_size)
  return dataset.prefetch(tf.data.AUTOTUNE), shapes
