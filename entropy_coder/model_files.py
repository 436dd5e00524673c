"""The framework-free half of a model directory: `weights.npz` + `entropy_coder_model.json`.

The Trainer writes these two files beside its SavedModel so that the real codec (numba, no
TensorFlow) can run the exact same network. The JSON carries a fingerprint of the weights and
the model config; the bitstream stores it, so a file is only ever decoded with the model that
encoded it (a different model would decode garbage without noticing).

Fingerprint (sha256, hex) -- the definition every writer and reader shares:
  for each weight name in sorted order:
    name (utf-8) + b'\\0' + shape as JSON list (e.g. b'[7,7,2,4]') + b'\\0' + b'float32\\0'
    + the little-endian float32 bytes of the array in C order
  then the canonical JSON of the normalised model_config
  (json.dumps(sort_keys=True, separators=(',', ':'))).

`resolve_model_dir` turns what users and TFX hand us (a model dir, the --train-dir of
`entropy-coder train`, a Trainer artifact URI, a Pusher destination) into the directory that
holds these files.
"""
import dataclasses
import hashlib
import json
import os
import zipfile

import numpy as np

from entropy_coder.errors import UserError, describe, read_user_json

MODEL_JSON = 'entropy_coder_model.json'
WEIGHTS_NPZ = 'weights.npz'
MODEL_FORMAT = 'entropy-coder-model'
MODEL_FORMAT_VERSION = 1
# TFX Trainer puts the serving export under this subdirectory of its Model artifact.
TRAINER_SERVING_SUBDIR = 'Format-Serving'
# `entropy-coder train` exports its model into this subdirectory of --train-dir.
TRAIN_MODEL_SUBDIR = 'model'

@dataclasses.dataclass(frozen=True)
class ModelFiles:
  """What the codec needs from a model directory. `weights` values are float32 arrays."""
  weights: dict
  model_config: dict
  fingerprint: str
  path: str = ''


def normalize_model_config(config, source='model_config'):
  """Checks a model_config dict (trainer.config's one check) and fills defaults: a new dict
  with every key, so the fingerprint does not depend on which defaults a writer spelled out."""
  from entropy_coder.trainer.config import model_config_from_dict  # pylint: disable=g-import-not-at-top
  return model_config_from_dict(config, source).to_dict()


def canonical_json(value):
  return json.dumps(value, sort_keys=True, separators=(',', ':'))


def fingerprint(weights, model_config):
  """sha256 hex over the weights and the normalised config (definition in the module docstring)."""
  digest = hashlib.sha256()
  for name in sorted(weights):
    array = np.ascontiguousarray(weights[name], dtype='<f4')
    digest.update(name.encode('utf-8') + b'\0')
    digest.update(canonical_json(list(array.shape)).encode('ascii') + b'\0')
    digest.update(b'float32\0')
    digest.update(array.tobytes())
  digest.update(canonical_json(model_config).encode('utf-8'))
  return digest.hexdigest()


def write_model_files(model_dir, weights, model_config):
  """Writes weights.npz and entropy_coder_model.json into model_dir; returns the fingerprint."""
  config = normalize_model_config(model_config)
  arrays = {}
  for name, value in weights.items():
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
      raise UserError(f'weight {name}: expected a float array, got dtype {array.dtype}')
    arrays[str(name)] = np.ascontiguousarray(array, dtype=np.float32)
  os.makedirs(model_dir, exist_ok=True)
  np.savez(os.path.join(model_dir, WEIGHTS_NPZ), **arrays)
  value = fingerprint(arrays, config)
  document = {'format': MODEL_FORMAT, 'version': MODEL_FORMAT_VERSION, 'model_config': config,
              'fingerprint': value}
  with open(os.path.join(model_dir, MODEL_JSON), 'w', encoding='utf-8') as f:
    json.dump(document, f, indent=2, sort_keys=True)
    f.write('\n')
  return value


def _newest_version_dir(path):
  versions = [name for name in os.listdir(path)
              if name.isdigit() and os.path.isdir(os.path.join(path, name))]
  if not versions:
    return None
  return os.path.join(path, max(versions, key=int))


def resolve_model_dir(path):
  """A model dir, a train dir (its model/), a Trainer Model artifact URI or a Pusher
  destination -> the dir with our files."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    problem = ('is a file, not a model directory' if os.path.exists(path) else
               'no such model directory')
    raise UserError(describe(path, f'{problem}; run train first'))
  candidates = [path, os.path.join(path, TRAIN_MODEL_SUBDIR),
                os.path.join(path, TRAINER_SERVING_SUBDIR)]
  newest = _newest_version_dir(path)
  if newest is not None:
    candidates += [newest, os.path.join(newest, TRAINER_SERVING_SUBDIR)]
  for candidate in candidates:
    if os.path.isfile(os.path.join(candidate, MODEL_JSON)):
      return candidate
  if os.path.isdir(os.path.join(path, 'checkpoints')):  # a train dir whose run did not finish
    raise UserError(describe(path, f'not an entropy-coder model directory: a train directory '
                             f'without {TRAIN_MODEL_SUBDIR}/{MODEL_JSON} (train exports it when '
                             'it reaches --steps); run train again to finish and export'))
  raise UserError(describe(path, f'not an entropy-coder model directory (no {MODEL_JSON} in it '
                           f'or in its {TRAIN_MODEL_SUBDIR}/ folder); pass the model/ folder that '
                           'train writes into --train-dir, or run train first'))


def read_model_files(path):
  """Loads and checks a model directory (any form `resolve_model_dir` accepts) -> ModelFiles."""
  model_dir = resolve_model_dir(path)
  json_path = os.path.join(model_dir, MODEL_JSON)
  document = read_user_json(json_path)
  if not isinstance(document, dict) or document.get('format') != MODEL_FORMAT:
    raise UserError(describe(json_path, f'not an entropy-coder model file (format is not "{MODEL_FORMAT}")'))
  version = document.get('version')
  if version != MODEL_FORMAT_VERSION:
    newer = (isinstance(version, int) and not isinstance(version, bool)
             and version > MODEL_FORMAT_VERSION)
    raise UserError(describe(json_path, f'model file version {version!r} is not supported '
                             f'(expected {MODEL_FORMAT_VERSION})'
                             + ('; it was written by a newer entropy-coder, upgrade to read it'
                                if newer else '')))
  config = normalize_model_config(document.get('model_config'), json_path)
  weights_path = os.path.join(model_dir, WEIGHTS_NPZ)
  try:
    with np.load(weights_path, allow_pickle=False) as data:
      weights = {name: data[name] for name in data.files}
  except FileNotFoundError:
    raise UserError(describe(weights_path, 'missing; the model directory is incomplete, run train again')) from None
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise UserError(describe(weights_path, f'not a valid weights .npz ({e})')) from None
  for name, array in weights.items():
    if array.dtype != np.float32:
      raise UserError(describe(weights_path, f'weight {name} has dtype {array.dtype}, expected float32'))
  expected = document.get('fingerprint')
  actual = fingerprint(weights, config)
  if expected != actual:
    raise UserError(describe(model_dir, 'fingerprint mismatch between entropy_coder_model.json and '
                             'weights.npz (files modified or mixed from different models)'))
  return ModelFiles(weights=weights, model_config=config, fingerprint=actual, path=model_dir)
