"""Unsigned LEB128 varints, the one encoder of them: protobuf's wire format (data_gen's
hand-written tf.Example writer) and the `.nec` container (codec/bitstream.py) both use it."""


def encode(value):
  """Unsigned LEB128, shortest form, of a non-negative int."""
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)
