"""The code length's TensorFlow ops: -log2 p(true bit), per bit, as a mean (the training loss) and
summed per layer (the serving signature's outputs), in bits; the size an ideal arithmetic coder
reaches.

The original called the mean `CodeLength` and reported it as an "additional compression ratio";
it is a code length (lower is better). The compression ratio is its inverse. The training loop,
the export and trainer/input_code_length.py (what the `code-length` command,
entropy_coder/commands/code_length.py, prints) all take it from here.
"""
import tensorflow as tf

_LN2 = 0.6931471805599453


def bit_code_lengths(bits, probs):
  """-log2 p(bit) per bit. bits in {0,1}, probs = P(bit = 1) (already clipped away from 0, 1)."""
  bits = tf.cast(bits, probs.dtype)
  return -(bits * tf.math.log(probs) + (1.0 - bits) * tf.math.log(1.0 - probs)) / _LN2


def code_length(bits, probs):
  """Mean bits per bit over every element (the original's CodeLength)."""
  return tf.reduce_mean(bit_code_lengths(bits, probs))


def per_layer_code_length_bits(bits, probs, layer_depth):
  """[B, L] summed -log2 p over each example's layer k (bits and probs [B, H, W, L*cd])."""
  lengths = bit_code_lengths(bits, probs)
  shape = tf.shape(lengths)
  per_layer = tf.reshape(lengths, [shape[0], shape[1], shape[2], shape[3] // layer_depth, layer_depth])
  return tf.reduce_sum(per_layer, axis=[1, 2, 4])
