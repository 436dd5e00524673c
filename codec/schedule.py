"""In which order the engine codes the pixels of a layer: the schedule, part of the format.

Within a layer, pixel (y, x) reads only a bounded cone of other pixels' results (`dependencies`,
derived from the model's masks in trainer/spec.py): the bits under adaptation0's strict 7x7
mask, a0 of the pixels that the row LSTM's input conv reads on its own row, h of the row above
under the row LSTM's 1x3 hidden conv, and c of the pixel above. With the smallest slope s such
that every such (dy, dx) has dx + s*dy < 0 (`wavefront_slope`, 4 for these masks), all pixels
with the same t = x + s*y are independent of each other and depend only on smaller t: they can
be computed together, min(H, ceil(W/s)) pixels of one code at once.

A `Schedule` is that order as data: steps, each a run of pixels (y, x) coded together. The
coding order of a layer's symbols, which is the order they enter the range coder, follows from
it: step by step; within a step pixel by pixel, then channel, then sample (innermost); in
channel-causal mode channel by channel, then pixel, then sample (channel ch of every pixel of
the step is decoded before channel ch + 1 is computed). The raster schedule (one pixel per
step, coder 1) gives today's [y][x][channel][sample]; the wavefront schedule is coder 2.
"""
import math
import typing

import numpy as np

from entropy_coder.codec import bitstream
from entropy_coder.trainer import spec

# The row LSTM's hidden conv is 1x3, unmasked, on h of the row above (spec.weight_specs).
ROW_HIDDEN_TAPS = spec.live_taps(np.ones((1, 3)))


def dependencies():
  """(dy, dx) offsets of the other pixels whose results pixel (y, x) of the same layer reads.

  adaptation0's live 7x7 taps read bits; the row LSTM input conv reads a0 at ROW_INPUT_TAPS of
  its own row (its own a0, (0, 0), is computed in the pixel's step); the hidden conv reads h of
  the row above at ROW_HIDDEN_TAPS; the LSTM cell reads c of the pixel above. Everything else a
  pixel reads (a1, the layer's state) comes from the finished previous layer.
  """
  offsets = set(spec.TAPS_7X7)
  offsets.update(tap for tap in spec.ROW_INPUT_TAPS if tap != (0, 0))
  offsets.update((dy - 1, dx) for dy, dx in ROW_HIDDEN_TAPS)
  offsets.add((-1, 0))
  return tuple(sorted(offsets))


def wavefront_slope(offsets=None):
  """The smallest integer s >= 0 with dx + s*dy < 0 for every dependency (dy, dx): then pixel
  (y, x) depends only on pixels of smaller t = x + s*y. ValueError if no slope works (a
  dependency on the same row to the right, or on a later row)."""
  offsets = dependencies() if offsets is None else offsets
  if any(dy > 0 or (dy == 0 and dx >= 0) for dy, dx in offsets):
    raise ValueError(f'no wavefront: a dependency is not before its pixel in raster order ({offsets})')
  # dx + s*dy < 0 for dy < 0: s > dx / -dy, i.e. s >= floor(dx / -dy) + 1.
  return max([0] + [math.floor(dx / -dy) + 1 for dy, dx in offsets if dy < 0])


SLOPE = wavefront_slope()


class Schedule(typing.NamedTuple):
  """pixels int64 [H*W, 2]: (y, x) in coding order; starts int64 [steps + 1]: step i codes
  pixels[starts[i]:starts[i+1]]; row_done int64 [steps]: the row whose last pixel step i codes,
  -1 if none (progress reports)."""
  pixels: np.ndarray
  starts: np.ndarray
  row_done: np.ndarray

  @property
  def steps(self):
    return len(self.starts) - 1

  @property
  def widest(self):
    """The most pixels a step codes."""
    return int(np.diff(self.starts).max())


def _schedule(height, width, step_of_pixel):
  ys, xs = np.divmod(np.arange(height * width, dtype=np.int64), width)
  # Steps numbered 0, 1, ... without gaps (x + s*y skips values when W < s).
  _, steps, counts = np.unique(step_of_pixel(ys, xs), return_inverse=True, return_counts=True)
  order = np.lexsort((ys, steps))  # by step, then by row
  pixels = np.stack([ys[order], xs[order]], axis=1)
  starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
  row_done = np.full(len(counts), -1, np.int64)
  row_done[steps[xs == width - 1]] = ys[xs == width - 1]
  return Schedule(np.ascontiguousarray(pixels), starts, row_done)


def raster(height, width):
  """One pixel per step, row by row: coder 1's order."""
  return _schedule(height, width, lambda ys, xs: ys * width + xs)


def wavefront(height, width, slope=SLOPE):
  """Step t codes the pixels with x + slope*y = t, top row first: coder 2's order."""
  return _schedule(height, width, lambda ys, xs: xs + slope * ys)


# The schedule each coder id names (bitstream.CODER_ID is what new files are written with).
SCHEDULES = {bitstream.CODER_RASTER: raster, bitstream.CODER_WAVEFRONT: wavefront}


def for_coder(coder_id, height, width):
  return SCHEDULES[coder_id](height, width)


def raster_positions(sched, width, channels, causal):
  """int64 [H*W*channels]: for each symbol of one sample in coding order (module docstring),
  its index (y*W + x)*channels + ch in raster order."""
  raster = sched.pixels[:, 0] * width + sched.pixels[:, 1]
  pixel_major = raster[:, None] * channels + np.arange(channels)  # [pixel in coding order, ch]
  if not causal:
    return pixel_major.reshape(-1)
  out = np.empty(pixel_major.size, np.int64)
  for lo, hi in zip(sched.starts[:-1], sched.starts[1:]):
    out[lo * channels:hi * channels] = pixel_major[lo:hi].T.reshape(-1)  # channel, then pixel
  return out
