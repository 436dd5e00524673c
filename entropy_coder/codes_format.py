"""The on-disk formats of binary codes: every reader and writer of codes imports this module.

Three layouts (docs/FORMAT.md describes them for users):

* **Our tf.Example** (what the generator, the ExampleGen components and the Trainer use):
  `code` = BytesList with one `np.packbits` (MSB first) of the {0,1} code in C order of
  `[H, W, D]`; `code_shape` = Int64List `[H, W, D]`. One bit per bit, 32x smaller than the
  original's floats.
* **The original's tf.Example** (docs/ORIGINAL.md §2): `code` = FloatList of H*W*D values in
  {-1.0, +1.0}, same C order; `code_shape` as ours. Read (never written) for compatibility.
* **The original's single-sample `.npz`**: keys `shape` = `[iterations, 1, H, W, layer_depth]`
  and `codes` = `np.packbits` of the int {0,1} tensor of that shape. Loaded with
  `allow_pickle=False`: a pickle in a user file is refused, never executed.

Codes in memory are always `uint8` arrays of shape `[H, W, D]` holding 0 or 1.
"""
import math
import os
import zipfile

import numpy as np

from entropy_coder.errors import UserError, describe

FEATURE_CODE = 'code'
FEATURE_SHAPE = 'code_shape'
# Optional int64 feature: the sample's index in its generated dataset (readers ignore it).
FEATURE_SAMPLE_INDEX = 'sample_index'
# Version of our Example layout; written into manifests and checked by readers.
EXAMPLE_FORMAT_VERSION = 1

_NPZ_KEYS = ('codes', 'shape')


def pack_code(bits):
  """[H, W, D] {0,1} array -> bytes (np.packbits, MSB first, C order)."""
  return np.packbits(np.asarray(bits, dtype=np.uint8).reshape(-1)).tobytes()


def unpack_code(data, shape, source='<code>'):
  """Inverse of `pack_code`; checks the byte count and that padding bits are zero."""
  shape = tuple(int(s) for s in shape)
  count = math.prod(shape)
  raw = np.frombuffer(data, dtype=np.uint8)
  if raw.size != (count + 7) // 8:
    raise UserError(describe(source, f'code holds {raw.size} bytes but code_shape '
                             f'{list(shape)} needs {(count + 7) // 8}'))
  bits = np.unpackbits(raw)
  if bits[count:].any():
    raise UserError(describe(source, 'nonzero padding bits after the last code bit'))
  return bits[:count].reshape(shape)


def check_shape(shape, source='<code>'):
  """A code shape must be three positive ints [H, W, D]."""
  shape = [int(s) for s in shape]
  if len(shape) != 3 or min(shape) < 1:
    raise UserError(describe(source, f'code_shape must be 3 positive ints [H, W, D], got {shape}'))
  return tuple(shape)


def encode_example(bits):
  """A [H, W, D] {0,1} code -> serialized tf.Example in our layout."""
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  bits = np.asarray(bits)
  example = example_pb2.Example()
  example.features.feature[FEATURE_CODE].bytes_list.value.append(pack_code(bits))
  example.features.feature[FEATURE_SHAPE].int64_list.value.extend(int(s) for s in bits.shape)
  return example.SerializeToString()


def encode_original_example(bits):
  """A code in the original's layout (FloatList of +-1). Only tests and converters write it."""
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  bits = np.asarray(bits)
  example = example_pb2.Example()
  example.features.feature[FEATURE_CODE].float_list.value.extend(
      (2.0 * bits.reshape(-1).astype(np.float32) - 1.0).tolist())
  example.features.feature[FEATURE_SHAPE].int64_list.value.extend(int(s) for s in bits.shape)
  return example.SerializeToString()


def decode_example(serialized, source='<record>'):
  """Serialized tf.Example (ours or the original's layout) -> [H, W, D] uint8 {0,1}."""
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  example = example_pb2.Example()
  try:
    example.ParseFromString(serialized)
  except message.DecodeError as e:
    raise UserError(describe(source, f'not a tf.Example ({e})')) from None
  features = example.features.feature
  for key in (FEATURE_CODE, FEATURE_SHAPE):
    if key not in features:
      raise UserError(describe(source, f'tf.Example has no "{key}" feature'))
  shape = check_shape(features[FEATURE_SHAPE].int64_list.value, source)
  code = features[FEATURE_CODE]
  kind = code.WhichOneof('kind')
  if kind == 'bytes_list' and len(code.bytes_list.value) == 1:
    return unpack_code(code.bytes_list.value[0], shape, source)
  if kind == 'float_list':
    values = np.asarray(code.float_list.value, dtype=np.float32)
    if values.size != math.prod(shape):
      raise UserError(describe(source, f'code holds {values.size} floats but code_shape '
                               f'{list(shape)} needs {math.prod(shape)}'))
    if not np.all((values == 1.0) | (values == -1.0)):
      raise UserError(describe(source, 'float code has values other than -1 and +1'))
    return (values > 0).astype(np.uint8).reshape(shape)
  raise UserError(describe(source, f'"{FEATURE_CODE}" must be one packed bytes value or a '
                           'float list of +-1'))


def is_gzip(path):
  """TFX writes GZIP TFRecords; the original wrote plain ones. Tell them apart by magic."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read(2) == b'\x1f\x8b'


def iter_tfrecord_codes(paths):
  """Yields (source, [H, W, D] code) for every record of the given TFRecord files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for path in paths:
    if not tf.io.gfile.exists(path):
      raise UserError(describe(path, 'no such file'))
    compression = 'GZIP' if is_gzip(path) else ''
    dataset = tf.data.TFRecordDataset([path], compression_type=compression)
    try:
      for index, record in enumerate(dataset.as_numpy_iterator()):
        yield f'{path} record {index}', decode_example(record, f'{path} record {index}')
    except tf.errors.DataLossError as e:
      raise UserError(describe(path, f'corrupt TFRecord file ({e.message.splitlines()[0]})')) from None


def read_npz(path):
  """Reads an original single-sample `.npz` -> ([H, W, D] uint8 code, layer_depth).

  Channel order as the original reader (docs/ORIGINAL.md §2): channel = iteration * layer_depth + bit.
  """
  if os.path.isfile(path) and not zipfile.is_zipfile(path):
    # np.load would take a .npy for an array (no keys) and anything else for a pickle.
    raise UserError(describe(path, 'not a .npz file (not a zip archive)'))
  try:
    with np.load(path, allow_pickle=False) as data:
      keys = sorted(data.files)
      if keys != sorted(_NPZ_KEYS):
        raise UserError(describe(path, f'expected keys {list(_NPZ_KEYS)}, found {keys}'))
      shape = data['shape']
      codes = data['codes']
  except UserError:
    raise
  except FileNotFoundError:
    raise UserError(describe(path, 'no such file')) from None
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    reason = 'holds pickled data, which is never loaded' if 'pickle' in str(e) else f'not a valid .npz ({e})'
    raise UserError(describe(path, reason)) from None
  if shape.ndim != 1 or shape.size != 5 or not np.issubdtype(shape.dtype, np.integer):
    raise UserError(describe(path, f'"shape" must be 5 ints [iterations, 1, H, W, layer_depth], '
                             f'got {shape.tolist()}'))
  iterations, one, height, width, layer_depth = (int(s) for s in shape)
  if one != 1 or min(iterations, height, width, layer_depth) < 1:
    raise UserError(describe(path, f'"shape" must be [iterations, 1, H, W, layer_depth] with '
                             f'positive sizes, got {shape.tolist()}'))
  count = iterations * height * width * layer_depth
  if codes.dtype != np.uint8:
    if np.issubdtype(codes.dtype, np.number) and not np.isin(codes, (0, 1)).all():
      raise UserError(describe(path, f'"codes" has non-binary values (dtype {codes.dtype}); '
                               'expected np.packbits output (uint8)'))
    raise UserError(describe(path, f'"codes" must be np.packbits output (uint8), got dtype '
                             f'{codes.dtype} with {codes.size} values'))
  if codes.ndim != 1 or codes.size != (count + 7) // 8:
    raise UserError(describe(path, f'"codes" holds {codes.size} bytes but shape {shape.tolist()} '
                             f'has {count} bits, i.e. {(count + 7) // 8} bytes'))
  bits = np.unpackbits(codes)
  if bits[count:].any():
    raise UserError(describe(path, 'nonzero padding bits after the last code bit'))
  bits = bits[:count].reshape(iterations, 1, height, width, layer_depth)
  bits = bits.transpose(1, 2, 3, 0, 4).reshape(height, width, iterations * layer_depth)
  return np.ascontiguousarray(bits), layer_depth


def write_npz(path, bits, layer_depth):
  """Writes a [H, W, D] {0,1} code as the original's `.npz` (np.savez_compressed)."""
  bits = np.asarray(bits, dtype=np.uint8)
  height, width, depth = bits.shape
  if layer_depth < 1 or depth % layer_depth:
    raise UserError(f'code depth {depth} is not a multiple of layer_depth {layer_depth}')
  iterations = depth // layer_depth
  ordered = bits.reshape(1, height, width, iterations, layer_depth).transpose(3, 0, 1, 2, 4)
  np.savez_compressed(
      path,
      shape=np.array([iterations, 1, height, width, layer_depth], dtype=np.int64),
      codes=np.packbits(ordered.reshape(-1)))
