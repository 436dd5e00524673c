"""Code length, the learning-rate schedule, and config validation."""
import json

import numpy as np
import pytest

from entropy_coder.errors import UserError
from entropy_coder.trainer import code_length_ops, config, train_loop


def test_code_length_matches_the_originals_unit_case():
  # docs/ORIGINAL.md §8: 2x4 case, mean -log2 of the true bits' probabilities.
  true_probs = np.array([.65, .75, .70, .90, .72, .80, .56, .54])
  bits = np.array([1, 0, 1, 1, 0, 0, 1, 0], np.float32)
  p_one = np.where(bits == 1, true_probs, 1 - true_probs).astype(np.float32)
  value = float(code_length_ops.code_length(bits.reshape(2, 4), p_one.reshape(2, 4)))
  assert value == pytest.approx(np.mean(-np.log2(true_probs)), abs=1e-6)
  assert value == pytest.approx(0.52805, abs=1e-5)


def test_code_length_against_numpy_reference():
  rng = np.random.default_rng(0)
  bits = rng.integers(0, 2, (3, 4, 5, 6)).astype(np.float32)
  probs = rng.uniform(0.001, 0.999, bits.shape).astype(np.float32)
  expected = -(bits * np.log2(probs) + (1 - bits) * np.log2(1 - probs))
  np.testing.assert_allclose(code_length_ops.bit_code_lengths(bits, probs).numpy(), expected, rtol=1e-5)
  per_layer = code_length_ops.per_layer_code_length_bits(bits, probs, layer_depth=2).numpy()
  np.testing.assert_allclose(per_layer, expected.reshape(3, 4, 5, 3, 2).sum(axis=(1, 2, 4)), rtol=1e-5)


@pytest.mark.parametrize('step, expected', [
    (0, 0.1), (4999, 0.1), (5000, 0.09), (9999, 0.09), (10000, 0.081), (52345, 0.1 * 0.9 ** 10)])
def test_learning_rate_is_the_originals_staircase(step, expected):
  synthetic = config.load_train_config(config.bundled_config_path('synthetic', 'train'))
  assert synthetic.decay_steps == 5000  # samples_per_decay 20000 / batch 4
  schedule = train_loop.learning_rate_schedule(synthetic)
  assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_decay_steps_is_at_least_one():
  assert config.TrainConfig(64, 0.1, 0.9, 10).decay_steps == 1


def test_bundled_configs_hold_the_original_values():
  model = config.load_model_config(config.bundled_config_path('synthetic', 'model'))
  assert (model.layer_depth, model.layer_count, model.coded_layer_count) == (2, 8, 0)
  train = config.load_train_config(config.bundled_config_path('synthetic', 'train'))
  assert (train.batch_size, train.learning_rate, train.decay_rate, train.samples_per_decay) == (4, 0.1, 0.9, 20000)


@pytest.mark.parametrize('values, message', [
    ({'layer_depth': 2}, 'missing key "layer_count"'),
    ({'layer_depth': 0, 'layer_count': 8}, '"layer_depth" must be a positive int'),
    ({'layer_depth': 2.5, 'layer_count': 8}, '"layer_depth" must be a positive int'),
    ({'layer_depth': 2, 'layer_count': 8, 'layers': 3}, "unknown key(s) ['layers']"),
    ({'layer_depth': 2, 'layer_count': 8, 'channel_causal': 1}, '"channel_causal" must be true or false'),
])
def test_bad_model_config_names_the_file_and_key(tmp_path, values, message):
  path = tmp_path / 'model_config.json'
  path.write_text(json.dumps(values))
  with pytest.raises(UserError) as error:
    config.load_model_config(str(path))
  assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_bad_train_config_and_bad_json(tmp_path):
  path = tmp_path / 'train_config.json'
  path.write_text(json.dumps({'batch_size': 4, 'learning_rate': 0.1, 'decay_rate': 0.9}))
  with pytest.raises(UserError, match='missing key "samples_per_decay"'):
    config.load_train_config(str(path))
  path.write_text('{"batch_size": ')
  with pytest.raises(UserError, match='not valid JSON'):
    config.load_train_config(str(path))
  with pytest.raises(UserError, match='no such file'):
    config.load_train_config(str(tmp_path / 'missing.json'))


def test_code_depth_must_fit_the_model():
  model = config.ModelConfig(layer_depth=2, layer_count=4)
  assert model.coded_depth(8) == 8
  with pytest.raises(UserError, match='not a multiple of layer_depth 2'):
    model.coded_depth(7, 'x.npz')
  with pytest.raises(UserError, match=r'5 layers .* at most 4 \(layer_count=4\)'):
    model.coded_depth(10, 'x.npz')
  limited = config.ModelConfig(layer_depth=2, layer_count=4, coded_layer_count=2)
  assert limited.coded_depth(4) == 4
  with pytest.raises(UserError, match=r'x.npz: code depth 10 is 5 layers .* at most 2 \(coded_layer_count=2\)'):
    limited.coded_depth(10, 'x.npz')  # refused, as the codec refuses it: never truncated
