"""The Keras model loaded with the original TF1 model's weights reproduces its probabilities."""
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import README_FIDELITY, REFERENCE_DIR
from entropy_coder.trainer import code_length_ops, spec
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
  lengths = code_length_ops.bit_code_lengths(codes.astype(np.float32), probs).numpy().astype(np.float64)
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


def test_the_model_is_built_from_its_spec():
  """trainer/spec.py is the one definition: the Keras weights are its names and shapes, with its
  initialisers (docs/ORIGINAL.md §8: the forget bias starts at 1, gates f, i, j, o)."""
  config = ModelConfig(layer_depth=2, layer_count=3, channel_causal=True)
  model = ProgressiveModel(config, seed=3)
  assert {name: tuple(v.shape) for name, v in model.named_variables_by_name().items()} == \
      spec.weight_shapes(config)
  h = config.hidden_depth
  assert h == spec.hidden_depth(2) == 4
  named = model.named_weights()
  for name in ('layer1/brnn/row_lstm/bias', 'layer_rnn/lstm/bias'):
    np.testing.assert_array_equal(named[name], [1.0] * h + [0.0] * 3 * h)
  assert not named['layer2/brnn/channel_ar/kernel'].any()
  kernel = named['layer0/brnn/adaptation1_conv3x3/kernel']
  assert 0 < np.abs(kernel).max() <= 2 / np.sqrt(3 * 3 * 2)  # 2-sigma truncated normal


def test_the_spec_states_gates_clip_and_live_taps():
  z = np.arange(8.0)  # h = 2: f = (0, 1), i = (2, 3), j = (4, 5), o = (6, 7)
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  h, c = spec.lstm_cell(z, np.array([10.0, 20.0]), sigmoid, np.tanh,
                        lambda v, n: np.split(v, n, axis=-1))
  want_c = sigmoid(z[:2]) * [10.0, 20.0] + sigmoid(z[2:4]) * np.tanh(z[4:6])
  np.testing.assert_array_equal(c, want_c)
  np.testing.assert_array_equal(h, sigmoid(z[6:]) * np.tanh(want_c))
  assert spec.PRED_CLIP == 0.999 and spec.EPSILON == 0.001
  np.testing.assert_allclose(spec.probability(np.array([-1.0, 0.0, 0.5, 1.0]), np.clip),
                             [0.0005, 0.5, 0.75, 0.9995], rtol=1e-12)
  assert len(spec.TAPS_7X7) == 24 and spec.ROW_INPUT_TAPS == ((0, -1), (0, 0))
  assert spec.layer_channels(3, 2) == slice(6, 8)


def test_the_spec_orders_the_row_lstm_input():
  """a = (adaptation0 | adaptation1), the original's order, whatever order the caller names them
  in; the input conv's input channels are as wide as a."""
  concat = lambda parts: np.concatenate(parts, axis=-1)
  a = spec.row_input(concat, adaptation1=np.full((1, 2), 1.0), adaptation0=np.full((1, 2), 0.0))
  np.testing.assert_array_equal(a, [[0.0, 0.0, 1.0, 1.0]])
  assert spec.row_input_depth(4) == 8
  shapes = spec.weight_shapes(ModelConfig(layer_depth=2, layer_count=1))
  assert shapes['layer0/brnn/row_lstm/input_conv/kernel'][2] == spec.row_input_depth(4)
  with pytest.raises(ValueError, match='adaptation1'):
    spec.row_input(concat, adaptation0=a)


def test_the_spec_imports_without_tensorflow():
  code = ('import sys; from entropy_coder.trainer import spec; '
          'from entropy_coder.codec import engine, engine_weights, full_forward; '
          'assert "tensorflow" not in sys.modules, "TensorFlow imported"')
  subprocess.run([sys.executable, '-c', code], check=True)
