"""Exact lower bounds on the code length of synthetic codes, computed from the source's rule.

Two floors matter when judging a model trained on the synthetic source (docs/ORIGINAL.md §3):

* the **source entropy**: every bit is a function of earlier bits XOR Bernoulli(0.2) noise, so
  a predictor that sees every earlier bit pays H_b(0.2) = 0.72193 bits/bit on average (on given
  samples: -log2 0.8 or -log2 0.2 per bit, whether the noise flipped it);
* the **visibility floor** of the progressive model: it predicts bit (y, x, d) of layer k from
  earlier layers and raster-earlier pixels of layer k, but not from the other bits of the same
  pixel and layer. The rule makes plane d depend on planes d-1..d-4 at the same pixel, so some
  of those parents are hidden. The Bayes-optimal prediction then sums over the hidden parents:
  P(bit | visible) = sum_h P(h | visible) P(bit | vote(h)). Nothing visible depends on the hidden
  bits (later pixels of the layer are not visible; raster-earlier pixels never read the current
  row of a plane), so P(h | visible) is the rule's own chain over the hidden planes, computed
  here exactly by a forward pass over the layer's planes with the last 4 hidden bits as state.

With `channel_causal` (bit c also sees bits < c of its pixel and layer) nothing is hidden and
the floor equals the source-entropy figure.
"""
import itertools

import numpy as np

from entropy_coder.data_gen.synthetic import (DEPTH_TEMPLATE, KEEP_PROBABILITY, LINE_TEMPLATE,
                                              VOTE_THRESHOLD)


def _line_mismatches(codes):
  """v1 for every bit: mismatches with LINE_TEMPLATE in rows y-1..y-3, columns x-2..x."""
  n, height, width, depth = codes.shape
  padded = np.zeros((n, height + 3, width + 2, depth), np.int16)
  valid = np.zeros_like(padded)
  padded[:, 3:, 2:] = codes
  valid[:, 3:, 2:] = 1
  count = np.zeros(codes.shape, np.int16)
  for r, row in enumerate(LINE_TEMPLATE, start=1):
    for c, expected in enumerate(row):  # column x-2+c
      window = (slice(None), slice(3 - r, 3 - r + height), slice(c, c + width))
      count += valid[window] * (padded[window] != expected)
  return count


def _source_probabilities(codes):
  """P(bit = 1) for every bit when every earlier bit is seen: 0.8 or 0.2 by the vote."""
  line = _line_mismatches(codes)
  depth = codes.shape[-1]
  total = line.copy()
  for j, expected in enumerate(DEPTH_TEMPLATE, start=1):
    total[..., j:] += (codes[..., :depth - j] != expected)
  vote = total >= VOTE_THRESHOLD
  return np.where(vote, KEEP_PROBABILITY, 1 - KEEP_PROBABILITY)


def ideal_probabilities(codes, layer_depth, channel_causal=False):
  """P(bit = 1 | what the progressive model may see) for codes uint8 [N, H, W, D]."""
  codes = np.asarray(codes, np.int16)
  if channel_causal or layer_depth == 1:
    return _source_probabilities(codes)
  line = _line_mismatches(codes)
  depth = codes.shape[-1]
  probs = np.empty(codes.shape, np.float64)
  # States: the last 4 hidden planes of the current layer at this pixel (most recent first).
  states = np.array(list(itertools.product((0, 1), repeat=4)), np.int16)  # [16, 4]
  for first in range(0, depth, layer_depth):
    weights = np.zeros(codes.shape[:3] + (16,))
    weights[..., 0] = 1.0  # before the layer no hidden bit: any state, use index 0
    for d in range(first, first + layer_depth):
      hidden = d - first  # how many hidden planes precede d in this layer
      known = line[..., d].astype(np.int16)
      for j, expected in enumerate(DEPTH_TEMPLATE, start=1):
        if d - j >= 0 and j > hidden:  # parent in an earlier layer: seen
          known = known + (codes[..., d - j] != expected)
      hidden_mismatch = np.zeros(16, np.int16)
      for j, expected in enumerate(DEPTH_TEMPLATE[:min(hidden, 4)], start=1):
        hidden_mismatch += states[:, j - 1] != expected
      vote = (known[..., None] + hidden_mismatch) >= VOTE_THRESHOLD  # [N, H, W, 16]
      p_one = np.where(vote, KEEP_PROBABILITY, 1 - KEEP_PROBABILITY)
      probs[..., d] = np.sum(weights * p_one, axis=-1)
      # Push the new hidden bit into the state: (b, s0, s1, s2) from (s0, s1, s2, s3).
      new_weights = np.zeros_like(weights)
      for index, state in enumerate(states):
        for bit, p_bit in ((1, p_one[..., index]), (0, 1 - p_one[..., index])):
          target = 8 * bit + (index >> 1)  # states are big-endian: state[0] is the MSB
          new_weights[..., target] += weights[..., index] * p_bit
      weights = new_weights
  return probs


def code_length(codes, probs):
  """Mean -log2 p(true bit) in bits/bit."""
  codes = np.asarray(codes)
  return float(np.mean(-np.log2(np.where(codes == 1, probs, 1 - probs))))


def binary_entropy(p):
  return float(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))
