"""The image encoder's settings and its directory: `encoder.json` beside TF checkpoints.

An encoder directory holds

* `encoder.json`: {"format": FORMAT, "version": VERSION, "config": {EncoderConfig keys},
  "trained_steps": N, "evaluation": {...}} (evaluation: PSNR per iteration on held-out pictures,
  written after training);
* `checkpoints/`: tf.train.CheckpointManager checkpoints of the networks, the optimiser and the
  step, so training resumes where it stopped and encoding reads the newest.

A directory without `encoder.json`, with another format, or without a checkpoint is refused in
one line naming it (`read_encoder_dir`), before any picture is read.
"""
import dataclasses
import json
import os

from entropy_coder.errors import UserError, describe, read_user_json
from entropy_coder.trainer import config as trainer_config

FORMAT = 'entropy-coder-image-encoder'
VERSION = 1
ENCODER_JSON = 'encoder.json'
CHECKPOINT_DIRNAME = 'checkpoints'
# Pixels per code position along each axis: four stride-2 convolutions.
DOWNSAMPLING = 16


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """The networks' shape and how they train. The defaults are the small default encoder
  (16 bits x 8 iterations, trained in about 15 minutes on 2 shared CPU cores)."""
  bits_per_iteration: int = 16
  iterations: int = 8
  # Encoder convolutions' widths (the decoder mirrors them): four stride-2 3x3 convolutions.
  channels: tuple = (16, 32, 64, 64)
  crop_size: int = 64
  batch_size: int = 8
  steps: int = 1500
  learning_rate: float = 2e-3
  seed: int = 0

  def to_dict(self):
    values = dataclasses.asdict(self)
    values['channels'] = list(self.channels)
    return values

  @property
  def code_depth(self):
    return self.bits_per_iteration * self.iterations

  def bits_per_pixel(self, iterations=None):
    """Code bits per picture pixel after `iterations` (default all) iterations."""
    return (self.iterations if iterations is None else iterations) * self.bits_per_iteration / (
        DOWNSAMPLING * DOWNSAMPLING)


def _is_channels(value):
  return (isinstance(value, (list, tuple)) and len(value) == 4 and
          all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in value))


_FIELDS = {
    'bits_per_iteration': (int, True, lambda v: 1 <= v <= 256, 'an int in 1..256'),
    'iterations': (int, True, lambda v: 1 <= v <= 64, 'an int in 1..64'),
    'channels': (list, True, _is_channels, 'a list of 4 ints in 1..1024'),
    'crop_size': (int, True, lambda v: v >= DOWNSAMPLING and v % DOWNSAMPLING == 0,
                  f'a positive multiple of {DOWNSAMPLING}'),
    'batch_size': (int, True, lambda v: v >= 1, 'a positive int'),
    'steps': (int, True, lambda v: v >= 0, 'an int >= 0'),
    'learning_rate': (float, True, lambda v: v > 0, 'a positive number'),
    'seed': (int, True, lambda v: v >= 0, 'an int >= 0'),
}


def config_from_dict(values, source='encoder config'):
  """The one check of an encoder config (a JSON object of EncoderConfig keys)."""
  if isinstance(values, dict) and isinstance(values.get('channels'), tuple):
    values = dict(values, channels=list(values['channels']))
  config = trainer_config.checked_fields(values, source, dict, _FIELDS)
  full = dict(EncoderConfig().to_dict(), **config)
  full['channels'] = tuple(full['channels'])
  return EncoderConfig(**full)


def encoder_json_path(encoder_dir):
  return os.path.join(encoder_dir, ENCODER_JSON)


def checkpoint_dir(encoder_dir):
  return os.path.join(encoder_dir, CHECKPOINT_DIRNAME)


def read_encoder_json(encoder_dir):
  """-> the parsed encoder.json document (its config checked), or a UserError naming the dir."""
  if not os.path.isdir(encoder_dir):
    problem = 'is not a directory' if os.path.exists(encoder_dir) else 'no such directory'
    raise UserError(describe(encoder_dir, f'{problem}; expected an image encoder directory'))
  path = encoder_json_path(encoder_dir)
  if not os.path.exists(path):
    raise UserError(describe(encoder_dir, f'not an image encoder directory (no {ENCODER_JSON}; '
                             'train one with entropy-coder train-encoder)'))
  document = read_user_json(path)
  if not isinstance(document, dict) or document.get('format') != FORMAT:
    raise UserError(describe(path, f'not an image encoder file (format must be {FORMAT!r})'))
  if document.get('version') != VERSION:
    raise UserError(describe(path, f'version {document.get("version")!r}; this program reads '
                             f'version {VERSION}'))
  document['config'] = config_from_dict(document.get('config'), f'{path} config')
  return document


def write_encoder_json(encoder_dir, config, trained_steps, evaluation=None):
  document = {'format': FORMAT, 'version': VERSION, 'config': config.to_dict(),
              'trained_steps': int(trained_steps)}
  if evaluation is not None:
    document['evaluation'] = evaluation
  os.makedirs(encoder_dir, exist_ok=True)
  temporary = encoder_json_path(encoder_dir) + '.tmp'
  with open(temporary, 'w', encoding='utf-8') as f:
    f.write(json.dumps(document, indent=2) + '\n')
  os.replace(temporary, encoder_json_path(encoder_dir))
  return document
