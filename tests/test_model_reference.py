"""The Keras model loaded with the original TF1 model's weights reproduces its probabilities."""
import os

import numpy as np
import pytest

from helpers import README_FIDELITY, REFERENCE_DIR
from entropy_coder.trainer import code_length
from entropy_coder.trainer.config import ModelConfig
from entropy_coder.trainer.model import ProgressiveModel, parameter_count



@pytest.fixture(scope='module')
def reference():
  load = lambda name: np.load(os.path.join(REFERENCE_DIR, name), allow_pickle=False)
  weights = dict(load('weights_step25284.npz'))
  codes = load('samples.npz')['codes']
  outputs = dict(load('outputs_step25284.npz'))
  model = ProgressiveModel(ModelConfig(layer_depth=2, layer_count=8))
  model.set_named_weights(weights)
  probs = model(2.0 * codes.astype(np.float32) - 1.0).numpy()
  return codes, outputs, probs, model


def test_probabilities_match_the_original_to_the_readme_figure(reference):
  codes, outputs, probs, _ = reference
  assert probs.shape == outputs['probs'].shape == codes.shape
  assert np.abs(probs - outputs['probs']).max() <= README_FIDELITY


def test_code_lengths_match_the_original(reference):
  codes, outputs, probs, _ = reference
  lengths = code_length.bit_code_lengths(codes.astype(np.float32), probs).numpy().astype(np.float64)
  np.testing.assert_allclose(lengths.mean(axis=(1, 2, 3)), outputs['code_length_per_sample'], atol=1e-5)
  per_layer = lengths.reshape(len(codes), 35, 48, 4, 2).mean(axis=(1, 2, 4))
  np.testing.assert_allclose(per_layer, outputs['code_length_per_layer'], atol=1e-5)


def test_batch_of_one_gives_the_same_probabilities(reference):
  codes, _, probs, model = reference
  single = model(2.0 * codes[3:4].astype(np.float32) - 1.0).numpy()
  np.testing.assert_allclose(single[0], probs[3], atol=1e-6)


def test_exported_weights_are_masked_and_named_as_the_reference(reference):
  _, _, _, model = reference
  named = model.named_weights()
  reference_names = set(np.load(os.path.join(REFERENCE_DIR, 'weights_step25284.npz')).files)
  assert set(named) == reference_names
  kernel = named['layer0/brnn/adaptation0_masked7x7/kernel']
  assert np.count_nonzero(np.abs(kernel).sum(axis=(2, 3))) == 24  # 24 of 49 taps survive
  assert not kernel[3, 3:].any() and not kernel[4:].any()
  assert not named['layer1/brnn/row_lstm/input_conv/kernel'][:, 2].any()


def test_parameter_count_relates_to_the_originals_10094():
  synthetic = ModelConfig(layer_depth=2, layer_count=8)
  # The original counts masked taps (they are variables there): L(302cd^2+18cd)+30cd^2+11cd.
  assert parameter_count(synthetic) == 10094
  model = ProgressiveModel(synthetic)
  assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 10094
  # Masked taps are variables here too but never used or trained: 25 of 49 taps of every
  # 7x7 kernel (2*4 channels) and 1 of 3 taps of every row-LSTM input conv (8*16 channels).
  assert parameter_count(synthetic, include_masked=False) == 10094 - 8 * (25 * 8 + 1 * 128)
  assert parameter_count(ModelConfig(layer_depth=32, layer_count=16)) == 4988256
  assert parameter_count(ModelConfig(layer_depth=1, layer_count=8)) == 2601
