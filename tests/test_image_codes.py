"""data_gen/image_codes.py: real codes from pictures, in the product's layout, exactly invertible."""
import numpy as np
import pytest

from entropy_coder.data_gen import image_codes
from entropy_coder.trainer import spec


def _picture(height, width, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def test_bit_planes_shape_order_and_inverse():
  image = _picture(21, 37)
  code = image_codes.bit_planes(image)
  assert code.shape == (21, 37, 8) and code.dtype == np.uint8
  assert set(np.unique(code)) <= {0, 1}
  # channel 0 is the MSB plane: layer 0 of a layer_depth 1 model codes it first
  np.testing.assert_array_equal(code[..., spec.layer_channels(0, 1)][..., 0], image >> 7)
  np.testing.assert_array_equal(code[..., 7], image & 1)
  np.testing.assert_array_equal(image_codes.image_from_bit_planes(code), image)
  np.testing.assert_array_equal(image_codes.code_integers(code), image)


def test_successive_approximation_shape_definition_and_inverse():
  image = _picture(70, 45, seed=1)  # 8 x 5 whole blocks; 6 rows and 5 columns cropped
  code = image_codes.successive_approximation(image)
  assert code.shape == (8, 5, 16) and code.dtype == np.uint8
  means = image[:64, :40].reshape(8, 8, 5, 8).mean(axis=(1, 3))
  np.testing.assert_array_equal(
      image_codes.block_means_from_successive_approximation(code), means)
  # bisection: after k + 1 bits the mean lies in an interval of width 256 / 2^(k+1)
  q = image_codes.code_integers(code).astype(np.int64)
  for k in range(16):
    width = 256.0 / 2 ** (k + 1)
    low = (q >> (15 - k)) * width
    assert np.all((low <= means) & (means < low + width))
  np.testing.assert_array_equal(code[..., 14:], 0)  # a 64-pixel mean has 14 significant bits
  assert image_codes.code_integers(code).dtype == np.uint16


def test_extremes_and_bad_pictures():
  white = np.full((8, 16), 255, np.uint8)
  q = image_codes.code_integers(image_codes.successive_approximation(white))
  np.testing.assert_array_equal(q, 4 * 64 * 255)
  np.testing.assert_array_equal(image_codes.successive_approximation(np.zeros((9, 9), np.uint8)), 0)
  with pytest.raises(ValueError, match='whole 8x8 block'):
    image_codes.successive_approximation(np.zeros((7, 100), np.uint8))
  with pytest.raises(ValueError, match='uint8 gray'):
    image_codes.bit_planes(np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match='unknown code kind'):
    image_codes.code_of('jpeg', white)


def test_tiles_raster_order():
  code = image_codes.bit_planes(_picture(35, 50, seed=2))
  tiles = image_codes.tiles(code, 16)
  assert len(tiles) == 2 * 3 and all(t.shape == (16, 16, 8) for t in tiles)
  np.testing.assert_array_equal(tiles[4], code[16:32, 16:32])
  assert image_codes.tiles(code[:10], 16) == []


def test_overlapping_tiles():
  code = image_codes.bit_planes(_picture(24, 40, seed=3))
  tiles = image_codes.tiles(code, 16, stride=8)
  assert len(tiles) == 2 * 4
  np.testing.assert_array_equal(tiles[5], code[8:24, 8:24])
