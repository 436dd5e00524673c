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

Input files are told apart by their first bytes, never by their names (`sniff_format`): a zip
archive is a `.npz`, a GZIP stream a GZIP TFRecord, a valid TFRecord length header a plain
TFRecord. `read_codes` is the one reader of a user's INPUT argument (compress, code-length).
"""
import glob
import math
import numbers
import os
import re
import struct
import zipfile

import numpy as np

from entropy_coder.errors import UserError, describe, opened_user_file

FEATURE_CODE = 'code'
FEATURE_SHAPE = 'code_shape'
# Optional int64 feature: the sample's index in its generated dataset (readers ignore it).
FEATURE_SAMPLE_INDEX = 'sample_index'
# Version of our Example layout; written into manifests and checked by readers.
EXAMPLE_FORMAT_VERSION = 1
# The file beside a dataset's records that says what they hold: the same name in a generated
# dataset (data_gen/dataset_writer.py) and an imported one (data_gen/npz_import.py), each with
# its own "format" key (docs/FORMAT.md).
MANIFEST_NAME = 'manifest.json'
# The features a manifest says our records hold (docs/FORMAT.md).
MANIFEST_FEATURES = (FEATURE_CODE, FEATURE_SHAPE, FEATURE_SAMPLE_INDEX)

_NPZ_KEYS = ('codes', 'shape')

# Largest code accepted from a file or a flag, in bits (2^27 = 16 MiB packed; a 4K image's
# gru_prime3 code is 16.6 M bits). A few compressed bytes can declare any shape: this bound
# keeps a 20-byte file from making a reader allocate gigabytes.
MAX_CODE_BITS = 1 << 27

# What `sniff_format` finds.
FORMAT_NPZ = 'npz'
FORMAT_TFRECORD = 'TFRecord'
FORMAT_TFRECORD_GZIP = 'GZIP TFRecord'
_ZIP_MAGICS = (b'PK\x03\x04', b'PK\x05\x06')  # a local file header; an empty archive
_GZIP_MAGIC = b'\x1f\x8b'
_NPY_MAGIC = b'\x93NUMPY'


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


def check_shape(shape, source=None):
  """The one check of a code shape: three positive ints [H, W, D] (ints, not bools or floats),
  at most MAX_CODE_BITS bits. For a record's `code_shape`, the pipeline settings' `code_shape`
  and the generator's shape alike. -> a tuple of ints, or a UserError naming `source` (if any).
  """
  try:
    values = list(shape)
  except TypeError:
    values = None
  if values is None or len(values) != 3 or any(
      isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in values):
    shown = repr(shape) if values is None else [
        int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s
        for s in values]
    raise UserError(_named(source, f'"code_shape" must be 3 positive ints [H, W, D], got {shown}'))
  shape = tuple(int(s) for s in values)
  check_code_bits(math.prod(shape), source, shape)
  return shape


def check_code_bits(count, source, shape):
  """A code of `count` bits must not exceed MAX_CODE_BITS (checked before any allocation)."""
  if count > MAX_CODE_BITS:
    raise UserError(_named(source, f'shape {list(shape)} is {count:,} bits, more than the '
                           f'{MAX_CODE_BITS:,} bits a code may have'))


def _named(source, problem):
  return describe(source, problem) if source else problem


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


def tf_error_text(error):
  """TensorFlow's error text without its '{{function_node ...}}' prefix and '[Op:...]' tail."""
  text = re.sub(r'\{\{[^}]*\}\}\s*', '', error.message or type(error).__name__)
  text = re.sub(r'\s*\[Op:[^\]]*\].*$', '', text.strip().splitlines()[0] if text.strip() else '')
  text = re.sub(r"(\d)' failed with ", r'\1: ', text)  # "truncated record at 0' failed with EOF"
  return text.rstrip(" '\"") or type(error).__name__


def iter_tfrecord_codes(paths):
  """Yields (source, [H, W, D] code) for every record of the given TFRecord files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for path in paths:
    if not tf.io.gfile.exists(path):
      raise UserError(describe(path, 'no such file'))
    if tf.io.gfile.isdir(path):
      raise UserError(describe(path, 'is a directory; expected a TFRecord file'))
    compression = 'GZIP' if is_gzip(path) else ''
    if compression:
      check_gzip_complete(path)
    dataset = tf.data.TFRecordDataset([path], compression_type=compression)
    try:
      for index, record in enumerate(dataset.as_numpy_iterator()):
        yield f'{path} record {index}', decode_example(record, f'{path} record {index}')
    except tf.errors.DataLossError as e:
      raise UserError(describe(path, f'corrupt {"GZIP " if compression else ""}TFRecord file '
                               f'({tf_error_text(e)})')) from None
    except tf.errors.OpError as e:
      raise UserError(describe(path, f'cannot read ({tf_error_text(e)})')) from None


def check_gzip_complete(path):
  """UserError unless `path` is a complete GZIP stream (its CRC32 and length trailer checked).

  TensorFlow's GZIP reader does not check the trailer: a file cut where a record ends reads as
  a shorter, valid file, losing codes silently. Python's gzip module checks it; this streams
  the file once (1 MiB at a time) without keeping it.
  """
  import gzip  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    with tf.io.gfile.GFile(path, 'rb') as raw, gzip.GzipFile(fileobj=raw, mode='rb') as stream:
      while stream.read(1 << 20):
        pass
  except EOFError:
    raise UserError(describe(path, 'corrupt GZIP TFRecord file (the GZIP stream is truncated)')) from None
  except (gzip.BadGzipFile, zlib.error, OSError) as e:
    raise UserError(describe(path, f'corrupt GZIP TFRecord file ({e})')) from None


def sniff_format(path):
  """FORMAT_NPZ, FORMAT_TFRECORD or FORMAT_TFRECORD_GZIP from the file's first bytes.

  A name proves nothing (`entropy-coder sample --output x` writes a .npz called x): a zip
  archive is a .npz, a GZIP stream a GZIP TFRecord, and 8 length bytes followed by their
  masked CRC32C (TFRecord framing) a plain TFRecord. Anything else is a UserError naming it.
  """
  from entropy_coder.data_gen import tfrecord_files  # pylint: disable=g-import-not-at-top
  with opened_user_file(path, 'a .npz or TFRecord file', 'rb') as f:
    head = f.read(12)
  if head[:4] in _ZIP_MAGICS:
    return FORMAT_NPZ
  if head[:2] == _GZIP_MAGIC:
    return FORMAT_TFRECORD_GZIP
  if head[:6] == _NPY_MAGIC:
    raise UserError(describe(path, 'is a .npy array, not a .npz archive with "codes" and "shape"'))
  if not head:
    raise UserError(describe(path, 'is empty; expected a .npz or TFRecord file'))
  if len(head) == 12 and struct.unpack('<I', head[8:])[0] == tfrecord_files.masked_crc32c(head[:8]):
    return FORMAT_TFRECORD
  raise UserError(describe(path, 'is neither a .npz (zip archive) nor a TFRecord file (plain or '
                           'GZIP)'))


def read_codes(path):
  """A user's INPUT (a .npz, a TFRecord file, or a glob of TFRecord files), by content.

  -> (list of (source, [H, W, D] uint8 code), format, layer_depth): format is FORMAT_NPZ (with
  the file's layer_depth) or a TFRecord format (layer_depth 0; GZIP only if every file is).
  """
  is_pattern = any(ch in path for ch in '*?[') and not os.path.exists(path)
  paths = sorted(glob.glob(path)) if is_pattern else [path]
  if not paths:
    raise UserError(describe(path, 'no files match'))
  formats = [sniff_format(name) for name in paths]
  if formats == [FORMAT_NPZ]:
    code, layer_depth = read_npz(paths[0])
    return [(paths[0], code)], FORMAT_NPZ, layer_depth
  for name, fmt in zip(paths, formats):
    if fmt == FORMAT_NPZ:
      raise UserError(describe(name, f'is a .npz, matched by the pattern {path}; a pattern '
                               'must match TFRecord files only (give a .npz on its own)'))
  codes = list(iter_tfrecord_codes(paths))
  if not codes:
    raise UserError(describe(path, 'holds no codes'))
  fmt = FORMAT_TFRECORD_GZIP if set(formats) == {FORMAT_TFRECORD_GZIP} else FORMAT_TFRECORD
  return codes, fmt, 0


def layer_depth_warning(source, file_layer_depth, model_layer_depth, model='the model'):
  """The warning when a code's own layer grouping (its .npz `layer_depth`, or an imported
  dataset's) differs from the model's, or None. Not an error: any D that is a multiple of the
  model's layer_depth codes losslessly, but the model then groups bits into layers the encoder
  did not make (e.g. two iterations as one layer), which usually costs compression."""
  if not file_layer_depth or file_layer_depth == model_layer_depth:
    return None
  return (f'warning: {source}: the code\'s layer_depth is {file_layer_depth} but {model} has '
          f'layer_depth {model_layer_depth}; its bits are grouped into layers of '
          f'{model_layer_depth}, not the encoder\'s iterations of {file_layer_depth}')


def _npy_header(archive, key, path):
  """(shape, dtype) of member `key` of an open NpzFile, read from its .npy header alone: the
  data is neither decompressed nor (for object arrays) unpickled."""
  member = key if key in archive.zip.namelist() else key + '.npy'
  with archive.zip.open(member) as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
      raise UserError(describe(path, f'"{key}" is a .npy of unsupported version {version}'))
  return shape, dtype


def read_npz(path):
  """Reads an original single-sample `.npz` -> ([H, W, D] uint8 code, layer_depth).

  Channel order as the original reader (docs/ORIGINAL.md §2): channel = iteration * layer_depth + bit.
  Both arrays' .npy headers are checked (dtype, size, the declared code size) before any data
  is read, so a pickle is never loaded and a few bytes cannot declare a gigabyte code.
  """
  if os.path.isdir(path):
    raise UserError(describe(path, 'is a directory; expected a .npz file'))
  if os.path.isfile(path) and not zipfile.is_zipfile(path):
    # np.load would take a .npy for an array (no keys) and anything else for a pickle.
    raise UserError(describe(path, 'not a .npz file (not a zip archive)'))
  try:
    with np.load(path, allow_pickle=False) as data:
      keys = sorted(data.files)
      if keys != sorted(_NPZ_KEYS):
        raise UserError(describe(path, f'expected keys {list(_NPZ_KEYS)}, found {keys}'))
      shape_shape, shape_dtype = _npy_header(data, 'shape', path)
      codes_shape, codes_dtype = _npy_header(data, 'codes', path)
      for key, dtype in (('shape', shape_dtype), ('codes', codes_dtype)):
        if dtype.hasobject:
          raise UserError(describe(path, f'"{key}" holds pickled Python objects (dtype '
                                   f'{dtype}), which are never loaded'))
      if shape_shape != (5,) or not np.issubdtype(shape_dtype, np.integer):
        raise UserError(describe(path, f'"shape" must be 5 ints [iterations, 1, H, W, '
                                 f'layer_depth], got a {shape_dtype} array of shape '
                                 f'{list(shape_shape)}'))
      shape = data['shape']
      iterations, one, height, width, layer_depth = (int(s) for s in shape)
      if one != 1 or min(iterations, height, width, layer_depth) < 1:
        raise UserError(describe(path, f'"shape" must be [iterations, 1, H, W, layer_depth] '
                                 f'with positive sizes, got {shape.tolist()}'))
      count = iterations * height * width * layer_depth
      check_code_bits(count, path, shape.tolist())
      if codes_dtype != np.uint8:
        hint = ''
        numeric = np.issubdtype(codes_dtype, np.number) or codes_dtype == np.bool_
        if numeric and math.prod(codes_shape) <= count:  # bounded: safe to look at the values
          values = data['codes']
          if not np.isin(values, (0, 1)).all():
            raise UserError(describe(path, f'"codes" has non-binary values (dtype {codes_dtype}); '
                                     'expected np.packbits output (uint8)'))
          if values.size == count:
            hint = '; these look like unpacked bits: store np.packbits(codes)'
        raise UserError(describe(path, f'"codes" must be np.packbits output (uint8), got dtype '
                                 f'{codes_dtype} of shape {list(codes_shape)}{hint}'))
      if len(codes_shape) != 1 or codes_shape[0] != (count + 7) // 8:
        raise UserError(describe(path, f'"codes" holds {math.prod(codes_shape)} bytes (shape '
                                 f'{list(codes_shape)}) but shape {shape.tolist()} has {count} '
                                 f'bits, i.e. {(count + 7) // 8} bytes'))
      codes = data['codes']
  except UserError:
    raise
  except FileNotFoundError:
    raise UserError(describe(path, 'no such file')) from None
  except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
    reason = ('holds pickled data, which is never loaded' if 'pickle' in str(e) else
              f'not a valid .npz ({" ".join(str(e).split()) or type(e).__name__})')
    raise UserError(describe(path, reason)) from None
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
