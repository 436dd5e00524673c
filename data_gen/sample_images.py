"""Pictures that ship inside installed packages, and pictures from user files, as uint8 arrays.

The benchmarks and the image encoder need real photographs with no network. matplotlib's
`mpl-data/sample_data` and scikit-learn's `datasets/images` hold a handful, each a different
size, kind and licence-free to use:

    name            source                                       kind        size (H x W)
    grace_hopper    matplotlib sample_data/grace_hopper.jpg      photo       600 x 512 (RGB)
    china           scikit-learn datasets/images/china.jpg       photo       427 x 640 (RGB)
    flower          scikit-learn datasets/images/flower.jpg      photo       427 x 640 (RGB)
    mri_s1045       matplotlib sample_data/s1045.ima.gz          scan        256 x 256 (16-bit
                                                                             big-endian, values
                                                                             0..215)
    jacksboro_dem   matplotlib sample_data/jacksboro_fault_dem   elevation   344 x 403 (int16)
    topobathy       matplotlib sample_data, topobathy.npz        elevation    91 x 120 (float32)

Elevation maps are scaled linearly from their own min..max to 0..255 and rounded; the scan is
already in 0..215. Gray pictures are repeated into three channels, so every picture is
uint8 [H, W, 3]; `gray` gives the ITU-R BT.601 luma, rounded.

`crops` cuts more, differently sized pictures from these, deterministically from a seed, for
datasets of mixed shapes; split train/test by `Photo.source` (a crop's source is its picture),
never by crop, or the test set shares pixels with the training set.
"""
import gzip
import os
import typing

import numpy as np

from entropy_coder.errors import UserError


class Photo(typing.NamedTuple):
  """One picture: a name, the picture it comes from (itself unless a crop), its kind ('photo',
  'scan', 'elevation', 'file') and its pixels uint8 [H, W, 3]."""
  name: str
  source: str
  kind: str
  pixels: np.ndarray


def _matplotlib_sample(name):
  import matplotlib  # pylint: disable=import-outside-toplevel
  return os.path.join(matplotlib.get_data_path(), 'sample_data', name)


def _sklearn_image(name):
  import sklearn.datasets  # pylint: disable=import-outside-toplevel
  return os.path.join(os.path.dirname(sklearn.datasets.__file__), 'images', name)


def _three_channels(gray_pixels):
  return np.repeat(np.asarray(gray_pixels, np.uint8)[..., None], 3, axis=2)


def _scaled(values):
  """Any real array -> uint8, min..max mapped linearly to 0..255 (a flat array gives 0)."""
  values = np.asarray(values, np.float64)
  low, high = values.min(), values.max()
  if high == low:
    return np.zeros(values.shape, np.uint8)
  return np.round((values - low) / (high - low) * 255.0).astype(np.uint8)


def _mri():
  with gzip.open(_matplotlib_sample('s1045.ima.gz'), 'rb') as f:
    raw = f.read()
  return _three_channels(np.frombuffer(raw, '>u2').reshape(256, 256).astype(np.uint8))


def _npz_array(file_name, key):
  with np.load(_matplotlib_sample(file_name), allow_pickle=False) as data:
    return data[key]


# name -> (kind, loader): the table of packaged pictures, in a fixed order.
_PACKAGED = {
    'grace_hopper': ('photo', lambda: read_image(_matplotlib_sample('grace_hopper.jpg'))),
    'china': ('photo', lambda: read_image(_sklearn_image('china.jpg'))),
    'flower': ('photo', lambda: read_image(_sklearn_image('flower.jpg'))),
    'mri_s1045': ('scan', _mri),
    'jacksboro_dem': ('elevation',
                      lambda: _three_channels(_scaled(_npz_array('jacksboro_fault_dem.npz',
                                                                 'elevation')))),
    'topobathy': ('elevation', lambda: _three_channels(_scaled(_npz_array('topobathy.npz', 'topo')))),
}

PACKAGED_NAMES = tuple(_PACKAGED)


def packaged_photos(names=PACKAGED_NAMES):
  """-> [Photo] of the packaged pictures `names` (default all, in the table's order)."""
  photos = []
  for name in names:
    if name not in _PACKAGED:
      raise UserError(f'no packaged picture {name!r}; there are: {", ".join(PACKAGED_NAMES)}')
    kind, load = _PACKAGED[name]
    photos.append(Photo(name, name, kind, load()))
  return photos


def read_image(path):
  """An image file (anything Pillow reads: PNG, JPEG, ...) -> uint8 [H, W, 3].

  Gray, palette and RGBA images are converted to RGB (alpha dropped); 16-bit gray keeps its
  top 8 bits. UserError naming the file if it is missing, not an image, or has no pixels.
  """
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
        pixels = np.asarray(image, np.int64)
        peak = 65535 if image.mode.startswith('I;16') else max(int(pixels.max()), 1)
        return _three_channels(np.clip(pixels * 255 // peak, 0, 255))
      if image.mode not in ('1', 'L', 'P', 'RGB', 'RGBA', 'LA', 'CMYK', 'YCbCr'):
        raise UserError(f'{path}: unsupported image mode {image.mode!r}')
      pixels = np.asarray(image.convert('RGB'), np.uint8)
  except FileNotFoundError:
    raise UserError(f'{path}: no such file') from None
  except IsADirectoryError:
    raise UserError(f'{path}: is a directory, not an image') from None
  except UnidentifiedImageError:
    raise UserError(f'{path}: not an image file Pillow can read') from None
  except (OSError, SyntaxError, ValueError) as error:
    raise UserError(f'{path}: damaged image ({error})') from None
  if pixels.ndim != 3 or min(pixels.shape[:2]) == 0:
    raise UserError(f'{path}: the image has no pixels')
  return pixels


def gray(pixels):
  """uint8 [H, W, 3] -> uint8 [H, W]: ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B, rounded."""
  rgb = np.asarray(pixels, np.float64)
  return np.round(rgb @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)


def crops(photos, count, seed, min_size=16, max_size=512, multiple=1):
  """`count` crops of `photos`, round robin over them, each of a random height and width in
  [min_size, max_size] (at most the picture's; rounded down to a multiple of `multiple`) at a
  random place, all drawn from `seed`: the same arguments give the same crops.

  A crop's name is '<source>_crop<i>_<H>x<W>' and its source the picture it is cut from.
  """
  rng = np.random.default_rng(seed)
  result = []
  for i in range(count):
    photo = photos[i % len(photos)]
    height, width = photo.pixels.shape[:2]
    sizes = []
    for limit in (height, width):
      top = min(max_size, limit) // multiple  # in blocks of `multiple`
      if top < 1:
        raise ValueError(f'{photo.name} ({height}x{width}) is smaller than one {multiple}-block')
      low = min(-(-max(min_size, multiple) // multiple), top)
      sizes.append(int(rng.integers(low, top + 1)) * multiple)
    crop_h, crop_w = sizes
    y = int(rng.integers(0, height - crop_h + 1))
    x = int(rng.integers(0, width - crop_w + 1))
    result.append(Photo(f'{photo.source}_crop{i}_{crop_h}x{crop_w}', photo.source, photo.kind,
                        photo.pixels[y:y + crop_h, x:x + crop_w].copy()))
  return result
