"""The trainer's export and the codec's engine are one model: same probabilities, round trips.

The Keras model (trainer/) and the TensorFlow-free codec engine (codec/) take the model's facts
from one definition (trainer/spec.py) but do the arithmetic apart; this checks the arithmetic
agrees through the model directory the Trainer exports, in both model modes.
"""
import numpy as np
import pytest

from entropy_coder import codec, model_files
from entropy_coder.codec.engine import engine_probabilities
from entropy_coder.codec.engine_weights import build_network
from entropy_coder.data_gen.synthetic import generate_codes
from entropy_coder.trainer import export
from entropy_coder.trainer.config import ModelConfig
from entropy_coder.trainer.model import ProgressiveModel


@pytest.mark.parametrize('channel_causal', [False, True])
def test_exported_model_gives_the_engine_the_same_probabilities(channel_causal, tmp_path):
  config = ModelConfig(layer_depth=2, layer_count=4, channel_causal=channel_causal)
  model = ProgressiveModel(config, seed=5)
  rng = np.random.default_rng(1)
  for variable in model.trainable_variables:  # trained-looking weights, channel_ar non-zero
    variable.assign(variable + rng.normal(0, 0.3, variable.shape).astype(np.float32))
  model_dir = export.export_model(model, str(tmp_path / 'model'))
  files = model_files.read_model_files(model_dir)
  codes = generate_codes(3, 0, 6, shape=(9, 11, 6))
  expected = model(2.0 * codes.astype(np.float32) - 1.0).numpy()
  engine, _ = engine_probabilities(build_network(files), codes)
  np.testing.assert_allclose(engine, expected, atol=1e-5)
  data = codec.compress(list(codes), files)
  restored = codec.decompress(data, files)
  assert len(restored) == len(codes)
  for original, decoded in zip(codes, restored):
    np.testing.assert_array_equal(decoded, original)


def test_a_wider_hidden_depth_trains_exports_and_codes_as_the_keras_model(tmp_path):
  """`hidden_depth` (a model_config key, default the original's 2 * layer_depth) widens every
  hidden stage; the Keras model, the export, the engine and codec.api all follow it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import config as config_lib  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import train_loop  # pylint: disable=g-import-not-at-top
  config = config_lib.model_config_from_dict({'layer_depth': 2, 'layer_count': 3,
                                              'hidden_depth': 6})
  assert config.hidden_depth == 6 and config.to_dict()['hidden_depth'] == 6
  train_config = config_lib.TrainConfig(batch_size=2, learning_rate=0.05, decay_rate=1.0,
                                        samples_per_decay=100)
  trainer = train_loop.Trainer(config, train_config, str(tmp_path / 'train'), seed=3)
  assert trainer.model.named_weights()['layer1/brnn/row_lstm/hidden_conv/kernel'].shape == (
      1, 3, 6, 24)
  codes = generate_codes(4, 0, 2, shape=(7, 9, 6))
  before = trainer.model.named_weights()
  loss = float(trainer.train_step(tf.constant(codes, tf.float32)))
  assert np.isfinite(loss) and trainer.step == 1
  after = trainer.model.named_weights()
  assert any(not np.array_equal(before[name], after[name]) for name in before)
  model_dir = trainer.export(str(tmp_path / 'model'))
  files = model_files.read_model_files(model_dir)
  assert files.model_config['hidden_depth'] == 6
  network = build_network(files)
  assert network.hidden_depth == 6
  expected = trainer.model(2.0 * codes.astype(np.float32) - 1.0).numpy()
  engine, _ = engine_probabilities(network, codes)
  np.testing.assert_allclose(engine, expected, atol=1e-5)
  data = codec.compress(list(codes), files)
  for original, decoded in zip(codes, codec.decompress(data, files)):
    np.testing.assert_array_equal(decoded, original)


def test_the_default_hidden_depth_leaves_the_config_and_fingerprint_as_before():
  """A config that spells out the default fingerprints as one that omits it (both as before
  the key existed), so older models and bitstreams keep their fingerprints."""
  from entropy_coder.trainer import config as config_lib  # pylint: disable=g-import-not-at-top
  omitted = model_files.normalize_model_config({'layer_depth': 2, 'layer_count': 4})
  spelled = model_files.normalize_model_config({'layer_depth': 2, 'layer_count': 4,
                                                'hidden_depth': 4})
  assert omitted == spelled == {'layer_depth': 2, 'layer_count': 4, 'coded_layer_count': 0,
                                'channel_causal': False}
  assert config_lib.ModelConfig(layer_depth=3, layer_count=2).hidden_depth == 6
  with pytest.raises(config_lib.UserError, match='"hidden_depth" must be a positive int'):
    config_lib.model_config_from_dict({'layer_depth': 2, 'layer_count': 4, 'hidden_depth': 0},
                                      'm.json')
