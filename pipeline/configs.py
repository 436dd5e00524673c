"""Pipeline constants and the settings of one pipeline run, with the embedded demo default.

Split by who edits what (the TFX template's rule): pipeline names and paths live here; the
model's hyperparameters are the original's JSON keys (`configs/*/model_config.json`,
`train_config.json`), checked by `entropy_coder.trainer.config`; feature keys live in
`entropy_coder.codes_format`.

The demo default is embedded here (not read from the repository's `configs/` folder) so an
installed package and the Kubeflow image compile the same pipeline without the source tree;
`configs/demo/*.json` holds the same model and train values for `entropy-coder train`, and
tests/test_pipeline_settings.py checks the two agree.
"""
import dataclasses
import os
from typing import Optional, Tuple

from entropy_coder import codes_format
from entropy_coder import push_gates
from entropy_coder import uris
from entropy_coder.errors import UserError, describe, read_user_json
from entropy_coder.trainer import config as trainer_config

PIPELINE_NAME = 'entropy-coder'
DEFAULT_PIPELINE_ROOT = os.path.join('runs', 'local')
# Under a local pipeline root: the ML-Metadata store and the Pusher's destination.
METADATA_FILENAME = 'metadata.sqlite'
SERVING_MODEL_DIRNAME = 'serving_model'

# Kubeflow: the image built by the top-level Dockerfile, and an artifact root that TFX's file IO
# can write from inside the containers (gs://, s3:// or a shared volume path; KFP's default
# minio:// root is not one).
DEFAULT_IMAGE = 'entropy-coder:latest'
DEFAULT_KFP_PIPELINE_ROOT = 'gs://YOUR_BUCKET/entropy-coder'

# The TFX Trainer calls this function (by module path, so no module_file is wheeled at compile).
TRAINER_RUN_FN = 'entropy_coder.trainer.run_fn.run_fn'

# The Beam args of BOTH builds: Beam's DirectRunner inside the process that runs a component.
# Locally that is this process (BeamDagRunner); on Kubeflow it is each task's container, where
# TFX's executors also default to the DirectRunner. In one process it is much faster than
# multi-processing on data of this size, and its workers need nothing installed beyond that
# process (multi-processing workers must be able to import the project). A cluster runner
# (Dataflow, Flink) would replace these args in the Kubeflow build only.
IN_PROCESS_BEAM_ARGS = ('--direct_running_mode=in_memory', '--direct_num_workers=1')

# The small demo model (configs/demo/*.json). With RunSettings' defaults (5,000 16x16x8 codes,
# 4,000 steps of 16) the whole run takes about DEMO_MINUTES on 2 shared CPU cores (`pipeline
# run --help` says so).
DEMO_MINUTES = 5
DEMO_MODEL_CONFIG = {'layer_depth': 2, 'layer_count': 8}
# The tuned optimiser (lr 1e-2, Adam epsilon 1e-3; docs/BENCHMARKS.md, "Training"): after 4,000
# steps the eval code length is within 0.006 bits/bit of the demo codes' visibility floor.
DEMO_TRAIN_CONFIG = {'batch_size': 16, 'learning_rate': 0.01, 'decay_rate': 0.9,
                     'samples_per_decay': 20000, 'adam_epsilon': 0.001}


# The pipeline's Trainer evaluates the eval split this many times during a run (every
# train_steps // TRAINER_EVALUATIONS steps) and exports the weights of the evaluation with the
# lowest code length, not the last step's (trainer/run_fn.py `eval_every`): a model that starts
# to overfit its training codes is pushed as it was at its best on held-out codes.
TRAINER_EVALUATIONS = 10


def trainer_eval_every(train_steps):
  """The Trainer's custom_config `eval_every` for a run of `train_steps`."""
  return max(1, train_steps // TRAINER_EVALUATIONS)


# Trainer steps of `pipeline run --images` when neither --train-steps nor a config sets them:
# image codes are deep (layer_depth = bits per iteration) and mixed in shape, so a step costs
# far more than the synthetic demo's; 300 steps train a model that the push gates bless (about
# 7 minutes for the whole run on 2 cores, docs/IMAGE_ENCODER.md).
IMAGES_TRAIN_STEPS = 300


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """Everything a pipeline run depends on besides paths; the default is the `make run` demo.

  `codes_dir` None -> SyntheticCodeGen(count, code_shape, seed); a directory -> NpzCodeImport;
  `images_dir` (with `encoder_dir`) -> ImageCodeImport.
  """
  model_config: dict = dataclasses.field(default_factory=lambda: dict(DEMO_MODEL_CONFIG))
  train_config: dict = dataclasses.field(default_factory=lambda: dict(DEMO_TRAIN_CONFIG))
  count: int = 5000
  code_shape: Tuple[int, int, int] = (16, 16, 8)
  seed: int = 0
  codes_dir: Optional[str] = None
  # A directory of pictures, coded by the image encoder of `encoder_dir` (ImageCodeImport);
  # `pipeline run --images` trains the default encoder on first use when none is given.
  images_dir: Optional[str] = None
  encoder_dir: Optional[str] = None
  train_steps: int = 4000  # the synthetic demo's; a run on pictures defaults to IMAGES_TRAIN_STEPS
  # The push gates' bounds (entropy_coder/push_gates.py): the Evaluator's blessing, ...
  max_code_length: float = push_gates.DEFAULT_MAX_CODE_LENGTH
  change_tolerance: float = push_gates.DEFAULT_CHANGE_TOLERANCE
  real_compression_check: bool = True  # also code the eval split for real (RealCompressionCheck)
  # ... and the round trip's: push only if that real payload is at most this much (relative)
  # above the model's code length.
  max_real_over_theory: float = push_gates.DEFAULT_MAX_REAL_OVER_THEORY

  def pipeline_arguments(self):
    """The `create_pipeline` keyword arguments these settings decide (both runners use them;
    each adds only its paths, metadata, codes_dir form and whether to use the Resolver)."""
    return dict(model_config=self.model_config, train_config=self.train_config,
                train_steps=self.train_steps, count=self.count, code_shape=self.code_shape,
                seed=self.seed, max_code_length=self.max_code_length,
                change_tolerance=self.change_tolerance,
                real_compression_check=self.real_compression_check,
                max_real_over_theory=self.max_real_over_theory,
                images_dir=_absolute(self.images_dir), encoder_dir=_absolute(self.encoder_dir))

  def replace(self, **changes):
    """A copy with the non-None `changes` applied (CLI flags left unset keep the config)."""
    return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

  def checked(self, source='settings'):
    """Validates every field now, so a bad value fails before any component runs."""
    trainer_config.model_config_from_dict(self.model_config, f'{source} model_config')
    trainer_config.train_config_from_dict(self.train_config, f'{source} train_config')
    values = {name: getattr(self, name) for name in _FIELD_CHECKS}
    for name in ('codes_dir', 'images_dir', 'encoder_dir'):
      if values[name] is None:
        del values[name]  # optional
    # The same table-driven check (and messages) as model_config and train_config.
    trainer_config.checked_fields(values, source, dict, _FIELD_CHECKS)
    shape = codes_format.check_shape(self.code_shape, source)
    if (self.codes_dir is not None and not uris.is_url(self.codes_dir)
        and not os.path.isdir(self.codes_dir)):
      raise UserError(describe(self.codes_dir, 'codes directory does not exist'))
    if self.images_dir is not None:
      if self.codes_dir is not None:
        raise UserError(f'{source}: give codes_dir or images_dir, not both')
      if not uris.is_url(self.images_dir) and not os.path.isdir(self.images_dir):
        raise UserError(describe(self.images_dir, 'pictures directory does not exist'))
    elif self.encoder_dir is not None:
      raise UserError(f'{source}: encoder_dir is only used with images_dir')
    return dataclasses.replace(self, code_shape=tuple(shape))


# RunSettings' scalar fields: key -> (type, required, check, what it must be), the table format
# of entropy_coder.trainer.config (code_shape: codes_format.check_shape; the two configs: their
# own tables there).
_FIELD_CHECKS = {
    'count': (int, True, lambda v: v >= 1, 'a positive int'),
    'train_steps': (int, True, lambda v: v >= 1, 'a positive int'),
    'seed': (int, True, lambda v: v >= 0, 'an int >= 0'),
    'codes_dir': (str, False, lambda v: True, 'a directory path'),
    'images_dir': (str, False, lambda v: True, 'a directory path'),
    'encoder_dir': (str, False, lambda v: True, 'a directory path'),
    'max_code_length': (float, True, lambda v: v > 0, 'a positive number'),
    'change_tolerance': (float, True, lambda v: True, 'a number'),
    'real_compression_check': (bool, True, lambda v: True, 'true or false'),
    'max_real_over_theory': (float, True, lambda v: v >= 0,
                             'a number >= 0 (0.02 = real size at most 2 % above theory)'),
}

_SETTING_KEYS = {f.name for f in dataclasses.fields(RunSettings)}


def _absolute(path):
  """A local path made absolute (components run with another working directory); URLs kept."""
  return path if path is None or uris.is_url(path) else os.path.abspath(path)


def load_settings(path, base=None):
  """Reads `--config`: a JSON file of RunSettings keys, or a folder of the original's configs.

  A folder (like `configs/synthetic`) supplies `model_config.json` and `train_config.json`;
  a JSON file may set any RunSettings key, e.g. {"model_config": {...}, "count": 20000}.
  Keys not given keep `base` (the demo default).
  """
  base = base or RunSettings()
  if os.path.isdir(path):
    values = {}
    for key in ('model_config', 'train_config'):
      file = os.path.join(path, f'{key}.json')
      if os.path.exists(file):
        values[key] = read_user_json(file)
    if not values:
      raise UserError(describe(path, 'folder has neither model_config.json nor train_config.json'))
  else:
    values = read_user_json(path)
    if not isinstance(values, dict):
      raise UserError(describe(path, f'must be a JSON object, got {type(values).__name__}'))
    unknown = sorted(set(values) - _SETTING_KEYS)
    if unknown:
      raise UserError(describe(path, f'unknown key(s) {unknown}; expected some of '
                               f'{sorted(_SETTING_KEYS)}'))
  if 'code_shape' in values and isinstance(values['code_shape'], list):
    values['code_shape'] = tuple(values['code_shape'])
  return dataclasses.replace(base, **values).checked(path)


@dataclasses.dataclass(frozen=True)
class LocalPaths:
  """Where a local run keeps everything, all under one pipeline root."""
  root: str

  @property
  def pipeline_root(self):
    return self.root

  @property
  def metadata_path(self):
    return os.path.join(self.root, METADATA_FILENAME)

  @property
  def serving_model_dir(self):
    return os.path.join(self.root, SERVING_MODEL_DIRNAME)
