"""Our tf.Example layout serialized directly in protobuf wire format, without TensorFlow.

Why: `codes_format.encode_example` builds the message with TensorFlow's `example_pb2`, and
importing that imports all of TensorFlow, which costs every Beam worker several seconds of a
generation run that otherwise takes a few seconds. The layout is ours and tiny (three features),
so it is written here byte for byte as `SerializeToString(deterministic=True)` writes it (map
entries sorted by key); tests check the bytes against TensorFlow's own serializer and decoder.

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }     entry: { string key = 1; Feature value = 2; }
    Feature  { BytesList bytes_list = 1; Int64List int64_list = 3; }
    BytesList { repeated bytes value = 1; }   Int64List { repeated int64 value = 1 [packed]; }
"""
import functools
import math

import numpy as np

from entropy_coder import codes_format, leb128

_LEN = 2  # wire type of length-delimited fields


def _varint(value):
  """Unsigned LEB128; int64 negatives as their 64-bit two's complement, as protobuf does."""
  return leb128.encode(value & ((1 << 64) - 1))


def _head(number, length):
  """Tag and length of a length-delimited field whose payload follows."""
  return _varint((number << 3) | _LEN) + _varint(length)


def _field(number, payload):
  return _head(number, len(payload)) + payload


def _entry(key, feature):
  """One map entry of Features.feature."""
  return _field(1, _field(1, key.encode()) + _field(2, feature))


def _int64_feature(values):
  return _field(3, _field(1, b''.join(_varint(int(v)) for v in values)))


@functools.lru_cache(maxsize=32)
def _layout(shape):
  """What is fixed for a shape: the bytes before the packed code, and the code_shape entry.

  Keys in sorted order, as deterministic serialization writes them: code < code_shape <
  sample_index.
  """
  nbytes = (math.prod(shape) + 7) // 8
  key = _field(1, codes_format.FEATURE_CODE.encode())
  bytes_list = len(_head(1, nbytes)) + nbytes
  feature = len(_head(1, bytes_list)) + bytes_list
  entry = len(key) + len(_head(2, feature)) + feature
  code_prefix = (_head(1, entry) + key + _head(2, feature) + _head(1, bytes_list)
                 + _head(1, nbytes))
  shape_entry = _entry(codes_format.FEATURE_SHAPE, _int64_feature(shape))
  return code_prefix, nbytes, shape_entry


@functools.lru_cache(maxsize=16)
def _index_entry_prefix(varint_length):
  """The sample_index entry up to its one varint, which is all that varies between examples."""
  return _entry(codes_format.FEATURE_SAMPLE_INDEX,
                _field(3, _field(1, b'\0' * varint_length)))[:-varint_length]


def encode_example(bits, sample_index=None):
  """[H, W, D] {0,1} code (and optional sample index) -> serialized tf.Example, our layout."""
  bits = np.asarray(bits)
  return encode_packed(codes_format.pack_code(bits), bits.shape, sample_index)


def encode_batch(codes, sample_indices=None):
  """[N, H, W, D] codes -> N serialized examples; packs all N at once (the generator's path)."""
  codes = np.asarray(codes, dtype=np.uint8)
  packed = np.packbits(codes.reshape(len(codes), -1), axis=1)
  indices = [None] * len(codes) if sample_indices is None else sample_indices
  return [encode_packed(row.tobytes(), codes.shape[1:], index)
          for row, index in zip(packed, indices)]


def encode_packed(packed, shape, sample_index=None):
  """`code` bytes already packed (codes_format.pack_code) + shape -> serialized tf.Example."""
  code_prefix, nbytes, shape_entry = _layout(tuple(int(s) for s in shape))
  if len(packed) != nbytes:
    raise ValueError(f'packed code holds {len(packed)} bytes, shape {list(shape)} needs {nbytes}')
  parts = [code_prefix, packed, shape_entry]
  if sample_index is not None:
    value = _varint(int(sample_index))
    parts += [_index_entry_prefix(len(value)), value]
  features = b''.join(parts)
  return _head(1, len(features)) + features
