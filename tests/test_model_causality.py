"""Exhaustive causality: a bit's probability depends on exactly the bits before it."""
import numpy as np
import pytest
import tensorflow as tf

from entropy_coder.trainer.config import ModelConfig
from entropy_coder.trainer.model import ProgressiveModel

HEIGHT, WIDTH, LAYER_DEPTH, LAYERS = 4, 5, 2, 3


def _strong_random_model(channel_causal):
  """Random weights of std 0.7 so every allowed dependency shows in float32."""
  model = ProgressiveModel(ModelConfig(layer_depth=LAYER_DEPTH, layer_count=4,
                                       channel_causal=channel_causal))
  rng = np.random.default_rng(7)
  for variable in model.trainable_variables:
    variable.assign(rng.normal(0, 0.7, variable.shape).astype(np.float32))
  return model


def _visible(target, source, channel_causal):
  """Is bit `source` = (y, x, d) before bit `target` in the model's order?"""
  (y, x, d), (sy, sx, sd) = target, source
  layer, source_layer = d // LAYER_DEPTH, sd // LAYER_DEPTH
  if source_layer != layer:
    return source_layer < layer
  if (sy, sx) != (y, x):
    return (sy, sx) < (y, x)  # raster order
  return channel_causal and sd < d


def _influence(model, code):
  """[source bit, target bit] max |change in P(target)| when the source bit flips."""
  depth = LAYER_DEPTH * LAYERS
  flips = np.repeat(code[None], HEIGHT * WIDTH * depth + 1, axis=0)
  for index in range(HEIGHT * WIDTH * depth):
    flips[index + 1].reshape(-1)[index] ^= 1
  probs = model(tf.constant(2.0 * flips.astype(np.float32) - 1.0)).numpy().reshape(len(flips), -1)
  return np.abs(probs[1:] - probs[0])


@pytest.mark.parametrize('channel_causal', [False, True])
def test_each_bit_sees_exactly_the_bits_before_it(channel_causal):
  model = _strong_random_model(channel_causal)
  depth = LAYER_DEPTH * LAYERS
  code = np.random.default_rng(3).integers(0, 2, (HEIGHT, WIDTH, depth)).astype(np.uint8)
  influence = _influence(model, code)
  positions = [np.unravel_index(i, (HEIGHT, WIDTH, depth)) for i in range(HEIGHT * WIDTH * depth)]
  for t, target in enumerate(positions):
    visible = np.array([_visible(target, source, channel_causal) for source in positions])
    # Nothing at or after the target (later pixels, the pixel's own bits, later layers) matters.
    # Not exactly 0: TF's CPU convolutions may reorder float sums (~3e-8 seen), which is why
    # the codec runs its own deterministic engine; a real leak would be ~1e-2 here.
    assert influence[~visible, t].max(initial=0.0) < 1e-6, f'bit {target} sees a later bit'
    if visible.any():
      assert influence[visible, t].max() > 1e-4, f'bit {target} ignores every earlier bit'


def test_channel_causal_bit_depends_on_the_lower_channels_of_its_pixel():
  model = _strong_random_model(channel_causal=True)
  code = np.random.default_rng(5).integers(0, 2, (HEIGHT, WIDTH, LAYER_DEPTH * LAYERS)).astype(np.uint8)
  influence = _influence(model, code)
  flat = lambda y, x, d: np.ravel_multi_index((y, x, d), (HEIGHT, WIDTH, LAYER_DEPTH * LAYERS))
  for layer in range(LAYERS):
    low, high = flat(2, 3, layer * LAYER_DEPTH), flat(2, 3, layer * LAYER_DEPTH + 1)
    assert influence[low, high] > 1e-4
    assert influence[high, low] < 1e-6
