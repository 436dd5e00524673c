"""Raster-scan masks of the progressive model's masked convolutions (docs/ORIGINAL.md §5).

One spatial mask is shared by every input and output channel. `strict` hides the centre tap
too (the current pixel); non-strict keeps it. Rows below the centre are always hidden.
"""
import numpy as np


def raster_mask(kernel_height, kernel_width, strict):
  """[kh, kw] float32 mask: 1 where a tap is strictly before (or at, if not strict) the centre."""
  if kernel_height % 2 == 0 or kernel_width % 2 == 0:
    raise ValueError(f'raster masks need odd kernels, got {kernel_height}x{kernel_width}')
  cy, cx = kernel_height // 2, kernel_width // 2
  mask = np.zeros((kernel_height, kernel_width), np.float32)
  mask[:cy, :] = 1.0
  mask[cy, :cx + (0 if strict else 1)] = 1.0
  return mask


def channel_ar_mask(layer_depth):
  """[cd, cd, 1] mask of the channel-causal head: entry [j, c] is kept only when j < c."""
  return np.triu(np.ones((layer_depth, layer_depth), np.float32), k=1)[:, :, None]
