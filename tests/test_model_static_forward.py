"""The training path (trainer/static_forward.py: H x W x D static, unrolled, plain ops) is the
same function as the tf.scan path that serves codes of any H x W: same probabilities, same
gradients, and a Trainer step lands on the same weights."""
import numpy as np
import pytest
import tensorflow as tf

from entropy_coder.data_gen.synthetic import generate_codes
from entropy_coder.trainer import code_length_ops, train_loop
from entropy_coder.trainer.config import ModelConfig, TrainConfig
from entropy_coder.trainer.model import ProgressiveModel


def _trained_looking(config, seed=2):
  model = ProgressiveModel(config, seed=seed)
  rng = np.random.default_rng(seed)
  for variable in model.trainable_variables:  # channel_ar non-zero, every weight moved
    variable.assign(variable + rng.normal(0, 0.3, variable.shape).astype(np.float32))
  return model


def _loss_and_gradients(model, bits):
  with tf.GradientTape() as tape:
    probs = model(2.0 * bits - 1.0)
    loss = code_length_ops.code_length(bits[..., :probs.shape[-1]], probs)
  variables = model.named_variables_by_name()
  grads = tape.gradient(loss, list(variables.values()))
  return probs, {name: grad for name, grad in zip(variables, grads) if grad is not None}


@pytest.mark.parametrize('config, depth', [
    (ModelConfig(layer_depth=2, layer_count=4), 6),  # fewer layers than the model has
    (ModelConfig(layer_depth=2, layer_count=3, channel_causal=True), 6),
    (ModelConfig(layer_depth=2, layer_count=4, coded_layer_count=2), 8),  # deeper codes cut
    (ModelConfig(layer_depth=1, layer_count=1, hidden_depth=3), 1),
])
def test_the_static_path_equals_the_scan_path_in_probabilities_and_gradients(config, depth):
  model = _trained_looking(config)
  bits = tf.constant(generate_codes(5, 0, 3, shape=(6, 7, depth)), tf.float32)
  static_probs, static_grads = _loss_and_gradients(model, bits)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, depth], tf.float32)])
  def any_shape(codes):  # H x W unknown when traced: the tf.scan path
    assert codes.shape[1] is None
    probs, grads = _loss_and_gradients(model, codes)
    return probs, grads

  scan_probs, scan_grads = any_shape(bits)
  np.testing.assert_allclose(static_probs.numpy(), scan_probs.numpy(), atol=1e-6)
  # The scan path gives the unused layers' weights zero gradients, the static path none.
  assert set(static_grads) <= set(scan_grads)
  for name, grad in scan_grads.items():
    expected = static_grads[name].numpy() if name in static_grads else np.zeros(grad.shape)
    np.testing.assert_allclose(expected, grad.numpy(), atol=1e-6, err_msg=name)
  assert any(np.abs(grad.numpy()).max() > 1e-4 for grad in static_grads.values())


def test_a_trainer_step_on_either_path_reaches_the_same_weights(tmp_path):
  config = ModelConfig(layer_depth=2, layer_count=3)
  train_config = TrainConfig(batch_size=2, learning_rate=0.05, decay_rate=1.0,
                             samples_per_decay=10, adam_epsilon=1e-3)
  bits = tf.constant(generate_codes(7, 0, 2, shape=(5, 6, 6)), tf.float32)
  weights = []
  for unrolled in (True, False):
    trainer = train_loop.Trainer(config, train_config, str(tmp_path / str(unrolled)), seed=4)
    trainer.model.unrolled = unrolled
    losses = [float(trainer.train_step(bits)) for _ in range(3)]
    weights.append((losses, trainer.model.named_weights()))
  (static_losses, static_weights), (scan_losses, scan_weights) = weights
  np.testing.assert_allclose(static_losses, scan_losses, atol=1e-6)
  assert static_losses[2] < static_losses[0]
  for name, value in scan_weights.items():
    np.testing.assert_allclose(static_weights[name], value, atol=1e-5, err_msg=name)
