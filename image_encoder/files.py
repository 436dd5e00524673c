"""Pictures and code files on disk, for the image encoder's commands and its pipeline component.

* Pictures are read by `entropy_coder.data_gen.sample_images.read_image` (one-line errors for a
  missing, damaged or unsupported file) and coded in gray (its BT.601 `gray`).
* A picture whose height or width is not a multiple of 16 is padded on the bottom and right by
  repeating its last row and column (edge replication), never cropped: nothing of it is lost.
* Codes go to `<stem>.npz` in the original's format (entropy_coder.codes_format.write_npz:
  keys `shape` [iterations, 1, H/16, W/16, bits] and `codes`). That format takes no other keys
  (its reader refuses them), so the picture's size before padding goes beside it, to
  `<stem>.size.json` ({"height": H, "width": W}); decoding crops to it when it is there.
  The pipeline's importers read `*.npz` only, so the sidecar never gets in their way.
"""
import json
import os

import numpy as np

from entropy_coder.data_gen import sample_images
from entropy_coder.errors import UserError, describe, read_user_json
from entropy_coder.image_encoder import config as config_lib

# What counts as a picture in a directory of them (a file named on the command line is read
# whatever its name; Pillow tells the kind from the content).
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm',
                  '.pgm', '.pnm')
SIZE_SUFFIX = '.size.json'


def is_image_name(name):
  return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith('.')


def images_in_dir(directory):
  """The picture files directly in `directory`, sorted by name; UserError if there are none."""
  if not os.path.isdir(directory):
    problem = 'is not a directory' if os.path.exists(directory) else 'no such directory'
    raise UserError(describe(directory, problem))
  paths = sorted(os.path.join(directory, name) for name in os.listdir(directory)
                 if is_image_name(name) and os.path.isfile(os.path.join(directory, name)))
  if not paths:
    raise UserError(describe(directory, f'holds no pictures ({", ".join(IMAGE_SUFFIXES)})'))
  return paths


def expand_inputs(inputs):
  """Command-line IMAGES (files and directories) -> picture paths, directories expanded."""
  paths = []
  for item in inputs:
    if os.path.isdir(item):
      paths.extend(images_in_dir(item))
    elif os.path.exists(item):
      paths.append(item)
    else:
      raise UserError(describe(item, 'no such file'))
  return paths


def read_gray(path):
  """A picture file -> uint8 gray [H, W] (one-line UserError naming a bad file)."""
  return sample_images.gray(sample_images.read_image(path))


def as_gray(pixels, source='<picture>'):
  """uint8 [H, W] or [H, W, 3] -> uint8 gray [H, W]."""
  pixels = np.asarray(pixels)
  if pixels.dtype != np.uint8:
    raise UserError(describe(source, f'pixels must be uint8, got {pixels.dtype}'))
  if pixels.ndim == 3 and pixels.shape[2] == 3:
    return sample_images.gray(pixels)
  if pixels.ndim != 2 or min(pixels.shape) == 0:
    raise UserError(describe(source, f'pixels must be [H, W] or [H, W, 3], got shape '
                             f'{list(pixels.shape)}'))
  return pixels


def padded(gray_pixels):
  """uint8 [H, W] -> uint8 [H', W'], H' and W' the next multiples of 16, edges repeated."""
  height, width = gray_pixels.shape
  step = config_lib.DOWNSAMPLING
  return np.pad(gray_pixels, ((0, -height % step), (0, -width % step)), mode='edge')


def size_path(npz_path):
  stem = npz_path[:-4] if npz_path.endswith('.npz') else npz_path
  return stem + SIZE_SUFFIX


def write_size(npz_path, height, width):
  with open(size_path(npz_path), 'w', encoding='utf-8') as f:
    f.write(json.dumps({'height': int(height), 'width': int(width)}) + '\n')


def read_size(npz_path, code_height, code_width):
  """The picture's (height, width) from the sidecar of `npz_path`, or the code's padded size
  (16 x the code's) when there is none. UserError for a sidecar that does not fit the code."""
  path = size_path(npz_path)
  full = (code_height * config_lib.DOWNSAMPLING, code_width * config_lib.DOWNSAMPLING)
  if not os.path.exists(path):
    return full
  values = read_user_json(path)
  size = (values.get('height'), values.get('width')) if isinstance(values, dict) else (None, None)
  if not all(isinstance(v, int) and not isinstance(v, bool) for v in size) or not all(
      full_v - config_lib.DOWNSAMPLING < v <= full_v for v, full_v in zip(size, full)):
    raise UserError(describe(path, f'"height" and "width" must be ints that pad to the code\'s '
                             f'{full[0]} x {full[1]} pixels, got {values!r}'))
  return size


def output_names(paths, suffix):
  """Picture or code paths -> output file names `<stem><suffix>`, refusing two inputs that
  would write the same output (a.png and a.jpg)."""
  names = {}
  for path in paths:
    name = os.path.splitext(os.path.basename(path))[0] + suffix
    if name in names:
      raise UserError(describe(path, f'would write {name}, as {names[name]} does; rename one'))
    names[name] = path
  return list(names)
