"""Exports a trained model as a model directory (docs/DESIGN.md): SavedModel + model files.

The SavedModel carries the signatures TFMA and the CLI use (their names and output keys are
trainer/serving_contract.py's); `weights.npz` and
`entropy_coder_model.json` (entropy_coder.model_files) carry the same weights, by name, for the
TensorFlow-free codec, with a fingerprint that bitstreams record.
"""
import tensorflow as tf

from entropy_coder import model_files
from entropy_coder.trainer import code_length as code_length_lib
from entropy_coder.trainer import data
from entropy_coder.trainer import serving_contract as contract


class ServingModule(tf.Module):
  """The exported functions. Outputs, for a batch of codes of one shape:

  probs [B, N] P(bit = 1) in C order of the coded [H, W, D_coded];
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
    layer_bits = code_length_lib.per_layer_code_length_bits(coded, probs, self._layer_depth)
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

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)],
               autograph=False)
  def serve_examples(self, examples):
    outputs = self._outputs(data.parse_packed_batch(examples))
    outputs[contract.PROBS] = tf.reshape(outputs[contract.PROBS], [tf.shape(examples)[0], -1])
    return outputs

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)],
               autograph=False)
  def labels(self, examples):
    bits = data.parse_packed_batch(examples)
    coded = self.model_config.coded_depth_tensor(tf.shape(bits)[-1])
    return {contract.LABEL_KEY: tf.reshape(bits[..., :coded], [tf.shape(examples)[0], -1])}

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
