"""What other code calls: load an encoder directory, code a picture array, decode a code.

    from entropy_coder.image_encoder import api
    code = api.encode_image(pixels, 'runs/encoder')     # uint8 [H/16, W/16, iterations * bits]
    picture = api.decode_code(code, 'runs/encoder', height, width)  # uint8 gray [H, W]

Codes are in the product's in-memory layout (entropy_coder.codes_format: uint8 [H, W, D] of
0/1, channel = iteration * bits_per_iteration + bit), i.e. what `codes_format.read_npz` returns
for the `.npz` that `encode-images` writes, and what `entropy_coder.codec.compress` takes.
"""
import collections
import os

import numpy as np

from entropy_coder.errors import UserError, describe
from entropy_coder.image_encoder import config as config_lib
from entropy_coder.image_encoder import files

# One picture's coding: its code, the uint8 gray reconstruction after each iteration (cropped
# to the picture), and the picture's size.
Encoded = collections.namedtuple('Encoded', ['code', 'reconstructions', 'height', 'width'])


class Encoder:
  """A trained encoder directory, loaded: its config, its networks and where it came from."""

  def __init__(self, directory, document, coder):
    self.directory = directory
    self.document = document
    self.config = document['config']
    self.coder = coder

  @property
  def trained_steps(self):
    return int(self.document.get('trained_steps', 0))


_LOADED = {}


def load_encoder(encoder_dir):
  """An encoder directory -> Encoder (its newest checkpoint). UserError naming the directory
  if it is not one (no encoder.json, another format) or holds no trained weights. Loaded
  encoders are kept per directory and checkpoint, so repeated calls cost nothing."""
  if isinstance(encoder_dir, Encoder):
    return encoder_dir
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  document = config_lib.read_encoder_json(encoder_dir)
  latest = tf.train.latest_checkpoint(config_lib.checkpoint_dir(encoder_dir))
  if latest is None:
    raise UserError(describe(encoder_dir, 'image encoder directory holds no trained weights '
                             f'(no checkpoint in {config_lib.CHECKPOINT_DIRNAME}/)'))
  key = (os.path.abspath(encoder_dir), latest, repr(document['config']))
  if key not in _LOADED:
    from entropy_coder.image_encoder import model  # pylint: disable=import-outside-toplevel
    coder = model.ResidualCoder(document['config'])
    try:
      model.checkpoint(coder).read(latest).expect_partial().assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
      text = ' '.join(str(e).split())[:200]
      raise UserError(describe(encoder_dir, f'its checkpoint does not fit its {config_lib.ENCODER_JSON} '
                               f'({text})')) from None
    _LOADED[key] = Encoder(encoder_dir, document, coder)
  return _LOADED[key]


def code_from_iterations(bits):
  """uint8 [iterations, 1, h, w, bits] (the .npz order) -> [h, w, iterations * bits]."""
  iterations, _, height, width, depth = bits.shape
  return np.ascontiguousarray(bits[:, 0].transpose(1, 2, 0, 3).reshape(
      height, width, iterations * depth))


def iterations_from_code(code, bits_per_iteration):
  """Inverse of code_from_iterations."""
  height, width, depth = code.shape
  return np.ascontiguousarray(code.reshape(height, width, depth // bits_per_iteration,
                                           bits_per_iteration).transpose(2, 0, 1, 3)[:, None])


def encode(pixels, encoder, source='<picture>'):
  """uint8 [H, W] gray or [H, W, 3] RGB (any size) -> Encoded. Deterministic: the same picture
  and encoder give the same code. The picture is padded to multiples of 16 (edges repeated)."""
  from entropy_coder.image_encoder import model  # pylint: disable=import-outside-toplevel
  encoder = load_encoder(encoder)
  gray = files.as_gray(pixels, source)
  height, width = gray.shape
  bits, reconstructions = encoder.coder.encode(model.to_unit(files.padded(gray)))
  return Encoded(code_from_iterations(bits),
                 model.to_uint8(reconstructions[:, :height, :width]), height, width)


def encode_image(pixels, encoder):
  """uint8 [H, W] or [H, W, 3] picture -> its code, uint8 [ceil(H/16), ceil(W/16),
  iterations * bits_per_iteration] {0,1}. `encoder`: a directory or a loaded Encoder."""
  return encode(pixels, encoder).code


def check_code(code, encoder, source='<code>'):
  """A code must have whole iterations of the encoder's bits, no more than it has."""
  config = encoder.config
  code = np.asarray(code)
  if code.ndim != 3 or code.shape[2] % config.bits_per_iteration or not (
      0 < code.shape[2] <= config.code_depth):
    raise UserError(describe(source, f'code of shape {list(code.shape)} does not fit the '
                             f'encoder {encoder.directory} ({config.iterations} iterations of '
                             f'{config.bits_per_iteration} bits: depth a multiple of '
                             f'{config.bits_per_iteration}, at most {config.code_depth})'))
  return code


def decode_all(code, encoder, height=None, width=None, source='<code>'):
  """A code ([h, w, k * bits], k <= iterations) -> uint8 gray [k, H, W]: the picture after each
  of its k iterations, cropped to height x width (default 16h x 16w)."""
  from entropy_coder.image_encoder import model  # pylint: disable=import-outside-toplevel
  encoder = load_encoder(encoder)
  code = check_code(code, encoder, source)
  height = code.shape[0] * config_lib.DOWNSAMPLING if height is None else height
  width = code.shape[1] * config_lib.DOWNSAMPLING if width is None else width
  pictures = encoder.coder.decode(iterations_from_code(code, encoder.config.bits_per_iteration))
  return model.to_uint8(pictures[:, :height, :width])


def decode_code(code, encoder, height=None, width=None, source='<code>'):
  """A code -> uint8 gray [H, W], the picture after all of the code's iterations."""
  return decode_all(code, encoder, height, width, source)[-1]


def psnr(original, reconstruction):
  """Peak signal-to-noise ratio of two uint8 pictures, in dB (inf when equal)."""
  error = np.mean((np.asarray(original, np.float64) - np.asarray(reconstruction, np.float64)) ** 2)
  return float('inf') if error == 0 else float(10.0 * np.log10(255.0 ** 2 / error))
