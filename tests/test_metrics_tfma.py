"""The TFMA code-length metrics, run through real TFMA on a hand-built SavedModel.

The SavedModel here is a tiny fixed probability model (no training) exporting the same two
signatures as the real Trainer (docs/DESIGN.md), so the metric is tested alone; the real model
is covered by the end-to-end pipeline tests. Every expected value is recomputed here with
numpy from the decoded codes, never taken from TFMA.
"""
import math
import os

import numpy as np
import pytest

from entropy_coder import codes_format
from entropy_coder.pipeline import eval_config as eval_config_lib
from entropy_coder.pipeline import tfma_metrics

SHAPE = (6, 5, 4)  # H, W, D
LAYER_DEPTH = 2
LAYER_COUNT = 3  # one more than the codes have, as a model built for deeper codes


def _fixture_probs(bits_flat):
  """P(bit i = 1) of the fixture model: 0.2 + 0.6 * previous bit (C order), 0.5 for the first."""
  previous = np.concatenate([np.full(bits_flat.shape[:-1] + (1,), 0.5),
                             bits_flat[..., :-1].astype(np.float64)], axis=-1)
  probs = 0.2 + 0.6 * previous
  probs[..., 0] = 0.5
  return probs


def _save_fixture_model(path, scale=1.0):
  """A tf.Module with `serving_default` and `transformed_labels` as docs/DESIGN.md specifies."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  height, width, depth = SHAPE
  count = height * width * depth
  layers = depth // LAYER_DEPTH

  def decode(examples):
    parsed = tf.io.parse_example(examples, {
        codes_format.FEATURE_CODE: tf.io.FixedLenFeature([], tf.string),
        codes_format.FEATURE_SHAPE: tf.io.FixedLenFeature([3], tf.int64)})
    packed = tf.io.decode_raw(parsed[codes_format.FEATURE_CODE], tf.uint8)
    shifts = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.uint8)
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed[..., None], shifts), 1)
    return tf.cast(tf.reshape(bits, [-1, (count + 7) // 8 * 8])[:, :count], tf.float32)

  class Fixture(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
      bits = decode(examples)
      previous = tf.concat([tf.fill([tf.shape(bits)[0], 1], 0.5), bits[:, :-1]], axis=1)
      probs = 0.2 + 0.6 * previous
      probs = tf.concat([tf.fill([tf.shape(bits)[0], 1], 0.5), probs[:, 1:]], axis=1)
      per_bit = -tf.math.log(tf.where(bits > 0.5, probs, 1 - probs)) / math.log(2.0) * scale
      per_layer = tf.reduce_sum(
          tf.reshape(per_bit, [-1, height, width, layers, LAYER_DEPTH]), axis=[1, 2, 4])
      padding = tf.zeros([tf.shape(bits)[0], LAYER_COUNT - layers])
      return {
          'probs': probs,
          'code_length_bits': tf.reduce_sum(per_bit, axis=1),
          'num_bits': tf.fill([tf.shape(bits)[0]], float(count)),
          'layer_code_length_bits': tf.concat([per_layer, padding], axis=1),
          'layer_num_bits': tf.concat([
              tf.fill([tf.shape(bits)[0], layers], float(height * width * LAYER_DEPTH)),
              padding], axis=1),
      }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def labels(self, examples):
      return {'bits': decode(examples)}

  module = Fixture()
  tf.saved_model.save(module, path, signatures={
      'serving_default': module.serve, 'transformed_labels': module.labels})


def _write_eval_examples(path, codes):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for code in codes:
      writer.write(codes_format.encode_example(code))


def _expected(codes, scale=1.0):
  """Numpy code length overall and per layer of the fixture model, from the raw codes."""
  flat = codes.reshape(len(codes), -1)
  probs = _fixture_probs(flat)
  per_bit = -np.log2(np.where(flat == 1, probs, 1 - probs)) * scale
  per_layer = per_bit.reshape(len(codes), SHAPE[0], SHAPE[1], -1, LAYER_DEPTH).sum(axis=(0, 1, 2, 4))
  layer_bits = len(codes) * SHAPE[0] * SHAPE[1] * LAYER_DEPTH
  return per_bit.sum() / per_bit.size, per_layer / layer_bits


def _run_tfma(tmp_path, model_dir, codes, config, baseline_dir=None):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  data = str(tmp_path / 'eval.tfrecord.gz')
  _write_eval_examples(data, codes)
  if baseline_dir:
    config = tfma.utils.update_eval_config_with_defaults(config, has_baseline=True)
    names = [spec.name for spec in config.model_specs]
    models = [tfma.default_eval_shared_model(d, model_name=n, eval_config=config)
              for d, n in zip((model_dir, baseline_dir), names)]
  else:
    # rubber_stamp: a first model with no baseline, as the TFX Evaluator runs it.
    models = tfma.default_eval_shared_model(model_dir, eval_config=config, rubber_stamp=True)
  output = str(tmp_path / 'evaluation')
  tfma.run_model_analysis(
      eval_shared_model=models, eval_config=config, data_location=data,
      output_path=output)
  return output


def _metrics_by_name(eval_result):
  (slice_key, by_output), = eval_result.slicing_metrics
  assert slice_key == ()
  values = by_output['']['']
  return {name: value['doubleValue'] for name, value in values.items() if 'doubleValue' in value}


@pytest.fixture(scope='module')
def codes():
  rng = np.random.default_rng(7)
  return rng.integers(0, 2, size=(23,) + SHAPE, dtype=np.uint8)


def test_tfma_reports_code_length_ratio_and_layers_by_name(tmp_path, codes):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / 'model')
  _save_fixture_model(model_dir)
  output = _run_tfma(tmp_path, model_dir, codes, eval_config_lib.make_eval_config())

  result = _metrics_by_name(tfma.load_eval_result(output))
  code_length, per_layer = _expected(codes)
  assert result['code_length'] == pytest.approx(code_length, rel=1e-6)
  assert result['compression_ratio'] == pytest.approx(1 / code_length, rel=1e-6)
  assert result['example_count'] == len(codes)
  coded_layers = SHAPE[2] // LAYER_DEPTH
  for layer in range(coded_layers):
    assert result[tfma_metrics.layer_metric_name(layer)] == pytest.approx(per_layer[layer], rel=1e-6)
  # The model has a third layer that these codes never reach: no metric for it.
  assert tfma_metrics.layer_metric_name(coded_layers) not in result
  # Random bits under this model cost more than 1 bit/bit, so the default bound fails it.
  assert code_length > 1.0
  validation = tfma.load_validation_result(output)
  assert not validation.validation_ok


def test_threshold_blesses_a_model_under_the_bound_and_identical_to_its_baseline(tmp_path, codes):
  """A candidate equal to the baseline passes the change threshold (its signed tolerance)."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / 'model')
  _save_fixture_model(model_dir)
  code_length, _ = _expected(codes)
  config = eval_config_lib.make_eval_config(max_code_length=code_length + 0.01)
  output = _run_tfma(tmp_path, model_dir, codes, config, baseline_dir=model_dir)
  validation = tfma.load_validation_result(output)
  assert validation.validation_ok, validation


def test_threshold_rejects_a_model_worse_than_its_baseline(tmp_path, codes):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  candidate, baseline = str(tmp_path / 'candidate'), str(tmp_path / 'baseline')
  _save_fixture_model(candidate, scale=1.001)
  _save_fixture_model(baseline)
  code_length, _ = _expected(codes)
  config = eval_config_lib.make_eval_config(max_code_length=code_length + 0.01)
  output = _run_tfma(tmp_path, candidate, codes, config, baseline_dir=baseline)
  validation = tfma.load_validation_result(output)
  assert not validation.validation_ok
  failed = {f.metric_key.name for s in validation.metric_validations_per_slice
            for f in s.failures}
  assert failed == {'code_length'}
  assert os.path.isdir(output)
