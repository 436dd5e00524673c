"""Exports a trained model as a model directory (docs/DESIGN.md): SavedModel + model files.

The SavedModel carries the signatures TFMA and the CLI use (their names and output keys are
trainer/serving_contract.py's); `weights.npz` and
`entropy_coder_model.json` (entropy_coder.model_files) carry the same weights, by name, for the
TensorFlow-free codec, with a fingerprint that bitstreams record.
"""
import tensorflow as tf

from entropy_coder import codes_format, model_files
from entropy_coder.trainer import code_length_ops
from entropy_coder.trainer import data
from entropy_coder.trainer import serving_contract as contract


class ServingModule(tf.Module):
  """The exported functions. Outputs, for a batch of codes (of any mix of H x W: a batch of one
  shape runs batched, any other batch code by code, `tf.map_fn`, each at its own shape, so a
  code's figures never depend on its batch):

  probs [B, N] P(bit = 1) in C order of the coded [H, W, D_coded]; N is the largest
  num_bits of the batch, probs[b, num_bits[b]:] are padding (0.5);
  code_length_bits [B] (sum of -log2 p(true bit)); num_bits [B];
  layer_code_length_bits and layer_num_bits [B, layer_count] (zero for absent layers).
  """

  def __init__(self, model):
    super().__init__()
    # Track the variables, not the Keras model: saving a Keras model attribute makes
    # tf.saved_model.save trace and serialise Keras' own call functions too (slow, unused).
    self.named_variables = dict(model.named_variables_by_name())
    self._model_call = model.__call__
    self.model_config = model.config
    self._layer_depth = model.config.layer_depth
    self._layer_count = model.config.layer_count

  def _outputs(self, bits):
    probs = self._model_call(2.0 * bits - 1.0)
    coded = bits[..., :tf.shape(probs)[-1]]
    layer_bits = code_length_ops.per_layer_code_length_bits(coded, probs, self._layer_depth)
    shape = tf.shape(coded)
    layers = tf.shape(layer_bits)[1]
    per_layer_count = tf.cast(shape[1] * shape[2] * self._layer_depth, tf.float32)
    pad = [[0, 0], [0, self._layer_count - layers]]
    layer_bits = tf.pad(layer_bits, pad)
    layer_counts = tf.pad(tf.fill([shape[0], layers], per_layer_count), pad)
    return {
        contract.PROBS: probs,
        contract.CODE_LENGTH_BITS: tf.reduce_sum(layer_bits, axis=1),
        contract.NUM_BITS: tf.reduce_sum(layer_counts, axis=1),
        contract.LAYER_CODE_LENGTH_BITS: layer_bits,
        contract.LAYER_NUM_BITS: layer_counts,
    }

  def _coded_sizes(self, examples):
    """Per example: its coded bit count N_b (int32 [B]), and whether all share one shape."""
    shapes = tf.cast(tf.io.parse_example(examples, {
        codes_format.FEATURE_SHAPE: tf.io.FixedLenFeature([3], tf.int64),
    })[codes_format.FEATURE_SHAPE], tf.int32)
    sizes = shapes[:, 0] * shapes[:, 1] * self.model_config.coded_depth_tensor(shapes[:, 2])
    return sizes, tf.reduce_all(tf.equal(shapes, shapes[:1]))

  def _mixed(self, examples, compute, shapes, padding):
    """`compute(bits [B, H, W, D])` -> {key: [B, ...]} for serialized examples of any shapes.

    `shapes` gives each output's per-example shape; keys in `padding` are per-bit outputs,
    flattened to [B, N_b] and padded with `padding[key]` to the batch's largest N. One shape
    in the batch: computed on the whole batch; several: per example (map_fn), each alone.
    """
    sizes, uniform = self._coded_sizes(examples)
    width = tf.reduce_max(sizes)

    def flat(outputs, count):
      return {key: tf.reshape(value, [count, -1]) if key in padding else value
              for key, value in outputs.items()}

    def whole_batch():
      return flat(compute(data.parse_packed_batch(examples)), tf.shape(examples)[0])

    def one_example(example):
      outputs = flat(compute(data.parse_packed_batch(example[None])), 1)
      return {key: (tf.pad(value[0], [[0, width - tf.shape(value)[1]]],
                           constant_values=padding[key]) if key in padding else value[0])
              for key, value in outputs.items()}

    def each_example():
      signature = {key: tf.TensorSpec(shape, tf.float32) for key, shape in shapes.items()}
      return tf.map_fn(one_example, examples, fn_output_signature=signature)

    return tf.cond(uniform, whole_batch, each_example)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)],
               autograph=False)
  def serve_examples(self, examples):
    layers = [self._layer_count]
    shapes = {contract.PROBS: [None], contract.CODE_LENGTH_BITS: [], contract.NUM_BITS: [],
              contract.LAYER_CODE_LENGTH_BITS: layers, contract.LAYER_NUM_BITS: layers}
    return self._mixed(examples, self._outputs, shapes, {contract.PROBS: 0.5})

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)],
               autograph=False)
  def labels(self, examples):
    def label(bits):
      coded = self.model_config.coded_depth_tensor(tf.shape(bits)[-1])
      return {contract.LABEL_KEY: bits[..., :coded]}
    return self._mixed(examples, label, {contract.LABEL_KEY: [None]}, {contract.LABEL_KEY: 0.0})

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32,
                                              name=contract.CODES_INPUT)],
               autograph=False)
  def serve_dense(self, codes):
    return self._outputs(codes)


def export_model(model, export_dir):
  """Writes the SavedModel with its three signatures, then weights.npz and the model JSON."""
  module = ServingModule(model)
  signatures = {
      contract.SERVING_SIGNATURE: module.serve_examples,
      contract.LABELS_SIGNATURE: module.labels,
      contract.DENSE_SIGNATURE: module.serve_dense,
  }
  tf.saved_model.save(module, export_dir, signatures=signatures)
  model_files.write_model_files(export_dir, model.named_weights(), model.config.to_dict())
  return export_dir
