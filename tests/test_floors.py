"""The exact floors of the synthetic source against independent estimates."""
import numpy as np

from entropy_coder.data_gen import floors
from entropy_coder.data_gen.synthetic import generate_codes


def test_source_floor_is_the_noise_entropy():
  codes = generate_codes(5, 0, 24)
  length = floors.code_length(codes, floors.ideal_probabilities(codes, 1))
  assert abs(length - floors.binary_entropy(0.2)) < 0.01  # sampling noise over 322,560 bits


def test_hidden_parent_floor_by_monte_carlo():
  """With layer_depth 2, the floor of odd planes equals an average over the hidden even bit
  drawn from its own rule: check the exact sum against resampling the hidden bit."""
  codes = generate_codes(9, 0, 4, shape=(12, 12, 8))
  exact = floors.ideal_probabilities(codes, 2)
  source = floors._source_probabilities(codes.astype(np.int16))  # pylint: disable=protected-access
  np.testing.assert_array_equal(exact[..., 0::2], source[..., 0::2])  # nothing hidden for even
  rng = np.random.default_rng(0)
  estimate = np.zeros_like(exact[..., 1::2])
  draws = 400
  for _ in range(draws):
    for layer in range(codes.shape[-1] // 2):  # resample only this layer's hidden even plane
      resampled = codes.copy()
      resampled[..., 2 * layer] = rng.random(codes.shape[:3]) < source[..., 2 * layer]
      estimate[..., layer] += floors._source_probabilities(resampled.astype(np.int16))[..., 2 * layer + 1]  # pylint: disable=protected-access
  assert np.abs(estimate / draws - exact[..., 1::2]).max() < 0.1  # 4 sigma of 400 draws
  assert np.abs(estimate / draws - exact[..., 1::2]).mean() < 0.02


def test_floor_ordering():
  codes = generate_codes(5, 0, 20, shape=(35, 48, 8))
  source = floors.code_length(codes, floors.ideal_probabilities(codes, 2, channel_causal=True))
  hidden = floors.code_length(codes, floors.ideal_probabilities(codes, 2))
  assert 0.71 < source < 0.735 and 0.73 < hidden < 0.75 and hidden - source > 0.01
