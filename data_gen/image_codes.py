"""Real binary codes from a picture, at the picture's own size: what the real-codes benchmark
(bench/bench_real_codes.py, docs/REAL_CODES.md) trains and compresses.

Every function takes a gray picture, a uint8 array [H, W], and returns a code in the product's
layout (entropy_coder.codes_format): uint8 {0,1} [H', W', D], channel = layer * layer_depth +
bit (trainer/spec.py `layer_channels`), so the first layer_depth channels are the first layer.
Each has an exact inverse, so a test can prove no information is lost or invented.

Two kinds:

* **Bit planes** (`bit_planes`): [H, W, 8], channel k = bit 7 - k of the gray value (MSB
  first). With layer_depth 1 each plane is a layer (8 layers: the MSB plane first, so each
  layer sees the coarser planes); with layer_depth 8 the whole byte is one layer, which needs
  channel_causal for bit k to see bits < k of its own pixel.

* **Successive approximation of 8x8 block means** (`successive_approximation`):
  [H // 8, W // 8, 16] (the picture cropped to whole blocks, bottom and right). For a block
  with pixel sum s (0 <= s <= 64 * 255 < 2^14) the value is the 16-bit integer
  q = 4 * s = floor(256 * mean), and channel k is bit 15 - k of q (MSB first). Iteration k of a
  successive-approximation (bisection) quantiser of the mean over [0, 256) emits exactly bit
  15 - k of q: after k + 1 iterations the mean is known to lie in an interval of width
  256 / 2^(k+1). The last two iterations are always 0 (a mean of 64 pixels has 14
  significant bits); every coder measured sees the same bits and may learn that.
  With layer_depth 1 (`SA_LAYER_DEPTHS`) each iteration is a layer (16 layers of 1 bit); the
  "2 bits per iteration" variant is the same 16 channels grouped by layer_depth 2: 8 layers,
  layer k holding base-4 digit k of q (bits 15 - 2k and 14 - 2k), i.e. a quantiser that
  quarters its interval per iteration. The code array is the same; only the model's
  grouping differs.

`code_integers` gives, for the JPEG XL baseline, the integer each pixel's bits form (the gray
value for bit planes, q for successive approximation).
"""
import numpy as np

BIT_PLANE_DEPTH = 8
BLOCK = 8  # successive approximation: block side, in pixels
SA_BITS = 16  # successive approximation: iterations (bits per block)
SA_LAYER_DEPTHS = (1, 2)  # the two groupings measured: 1 and 2 bits per iteration
_SA_SCALE = 4  # q = _SA_SCALE * block sum = floor(256 * mean): 2^16 / (64 * 256)

KIND_BIT_PLANES = 'bit_planes'
KIND_SUCCESSIVE_APPROXIMATION = 'successive_approximation'
KINDS = (KIND_BIT_PLANES, KIND_SUCCESSIVE_APPROXIMATION)


def _gray(image):
  image = np.asarray(image)
  if image.ndim != 2 or image.dtype != np.uint8:
    raise ValueError(f'expected a uint8 gray picture [H, W], got {image.dtype} {list(image.shape)}')
  return image


def integers_to_bits(values, depth):
  """uint [H, W] integers -> uint8 {0,1} [H, W, depth], channel k = bit depth - 1 - k."""
  shifts = np.arange(depth - 1, -1, -1, dtype=np.uint32)
  return ((np.asarray(values, np.uint32)[..., None] >> shifts) & 1).astype(np.uint8)


def bits_to_integers(bits):
  """The inverse of integers_to_bits: uint8 {0,1} [H, W, D] -> uint32 [H, W]."""
  bits = np.asarray(bits, np.uint32)
  depth = bits.shape[-1]
  return np.sum(bits << np.arange(depth - 1, -1, -1, dtype=np.uint32), axis=-1, dtype=np.uint32)


def bit_planes(image):
  """uint8 [H, W] -> uint8 {0,1} [H, W, 8]: the gray value's 8 bit planes, MSB first."""
  return integers_to_bits(_gray(image), BIT_PLANE_DEPTH)


def image_from_bit_planes(code):
  """The inverse of bit_planes: [H, W, 8] -> uint8 [H, W]."""
  return bits_to_integers(code).astype(np.uint8)


def block_sums(image):
  """uint8 [H, W] -> int64 [H // 8, W // 8]: each whole 8x8 block's pixel sum."""
  image = _gray(image)
  rows, cols = image.shape[0] // BLOCK, image.shape[1] // BLOCK
  if not rows or not cols:
    raise ValueError(f'a {list(image.shape)} picture has no whole {BLOCK}x{BLOCK} block')
  blocks = image[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
  return blocks.sum(axis=(1, 3), dtype=np.int64)


def successive_approximation(image):
  """uint8 [H, W] -> uint8 {0,1} [H // 8, W // 8, 16]: bits of q = 4 * block sum, MSB first
  (the module docstring defines it)."""
  return integers_to_bits(_SA_SCALE * block_sums(image), SA_BITS)


def block_means_from_successive_approximation(code):
  """The inverse: [H', W', 16] -> float64 [H', W'] block means (exact: q / 256)."""
  return bits_to_integers(code) / 256.0


def code_of(kind, image):
  """The code of `kind` (KINDS) for a gray picture."""
  if kind == KIND_BIT_PLANES:
    return bit_planes(image)
  if kind == KIND_SUCCESSIVE_APPROXIMATION:
    return successive_approximation(image)
  raise ValueError(f'unknown code kind {kind!r}; expected one of {KINDS}')


def code_integers(code):
  """Each pixel's bits as one integer (MSB first): uint8 for 8-bit codes, uint16 up to 16."""
  depth = code.shape[-1]
  if depth > 16:
    raise ValueError(f'a depth-{depth} code does not fit a 16-bit integer')
  return bits_to_integers(code).astype(np.uint8 if depth <= 8 else np.uint16)


def tiles(code, size, stride=None):
  """size x size tiles of a [H, W, D] code every `stride` pixels (default `size`: no overlap),
  in raster order; a border that does not fill a whole tile is left out. Fixed-shape training
  data for a model trained on tiles. -> list of [size, size, D] arrays (empty when the code is
  smaller than a tile)."""
  stride = stride or size
  return [code[y:y + size, x:x + size]
          for y in range(0, code.shape[0] - size + 1, stride)
          for x in range(0, code.shape[1] - size + 1, stride)]
