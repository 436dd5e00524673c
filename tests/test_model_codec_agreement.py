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
