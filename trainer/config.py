"""Model and training configs: the original's JSON keys, checked once, with one-line errors.

The original read three JSON files (docs/ORIGINAL.md §4) and failed deep inside TF on a bad value.
Here every key is validated when the file is read, and errors name the file and the key.
"""
import dataclasses
import os
import typing

from entropy_coder.errors import UserError, describe, read_user_json
from entropy_coder.trainer import spec

_CONFIG_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """`model_config.json`: the progressive model's shape."""
  layer_depth: int  # cd: bits per pixel per layer (one encoder iteration)
  layer_count: int  # how many layers the model has weights for
  coded_layer_count: int = 0  # > 0: only the first coded_layer_count layers are modelled
  channel_causal: bool = False  # our extension: bit c also sees bits < c of its pixel and layer
  # Our capacity key: h, the width of every hidden stage. Absent (None) it is the original's
  # 2 * layer_depth (spec.hidden_depth); __post_init__ resolves it, so it is always an int.
  hidden_depth: typing.Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, 'hidden_depth', spec.hidden_depth(self.layer_depth, self.hidden_depth))

  def coded_depth(self, depth, source='<code>', model='the model'):
    """How many channels of a depth-`depth` code are modelled: all of them. UserError if the
    code does not fit (`code_layers`, the check the codec makes too)."""
    return code_layers(depth, self.layer_depth, self.layer_count, self.coded_layer_count,
                       source, model) * self.layer_depth

  def coded_depth_tensor(self, depth):
    """The modelled channels inside a TF graph (serving signatures see the depth only at run
    time, and take any code: deeper ones are cut to coded_layer_count there, without an error;
    training and the codec refuse them through `code_layers`)."""
    return self._graph_layers(depth) * self.layer_depth

  def coded_layers_in_graph(self, depth):
    """The model's own check of a code of `depth` channels, inside its graph: -> the layers it
    codes, after asserting whole layers and at most layer_count. `depth` is a Python int (a
    static shape; the result is an int too) or a tensor. Readable errors come before, from
    `code_layers`; this is the graph's guard, the same on the scan and the unrolled path."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.debugging.assert_equal(depth % self.layer_depth, 0,
                              message='code depth is not a multiple of layer_depth')
    layers = self._graph_layers(depth)
    tf.debugging.assert_less_equal(layers, self.layer_count,
                                   message='code has more layers than layer_count')
    return layers

  def _graph_layers(self, depth):
    """depth // layer_depth, cut to coded_layer_count when > 0; an int for an int depth."""
    layers = depth // self.layer_depth
    if self.coded_layer_count > 0:
      if isinstance(layers, int):
        return min(layers, self.coded_layer_count)
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      layers = tf.minimum(layers, self.coded_layer_count)
    return layers

  def to_dict(self):
    """The config as JSON keys. `hidden_depth` only when it is not the original's default: the
    model fingerprint hashes this dict (entropy_coder/model_files.py), so models and bitstreams
    written before the key existed keep theirs, whichever way a writer spells the default."""
    values = dataclasses.asdict(self)
    if self.hidden_depth == spec.hidden_depth(self.layer_depth):
      del values['hidden_depth']
    return values


# Adam's epsilon when a train_config does not say: the best we measured (docs/BENCHMARKS.md).
DEFAULT_ADAM_EPSILON = 1e-3


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """`train_config.json`: batch size and the staircase-decayed learning rate."""
  batch_size: int
  learning_rate: float
  decay_rate: float
  samples_per_decay: int
  # Our addition (not in the original's JSON): Adam's epsilon. The original's 1.0 is unusual:
  # it turns Adam into roughly momentum SGD for the small gradients of this loss, which learns
  # far more slowly (docs/BENCHMARKS.md, "Training"). The default is the tuned 1e-3; the
  # original's configs (configs/synthetic/) say 1.0 explicitly, for fidelity.
  adam_epsilon: float = DEFAULT_ADAM_EPSILON
  # Our addition: the side of the square tiles trained on (trainer/data.py). 0 = whole codes
  # when the training data has one shape, else tiles of data.DEFAULT_MIXED_CROP.
  crop: int = 0
  # Our regulariser: the training loss adds weight_decay * (sum of squared kernel weights), an
  # L2 penalty (biases exempt); 0 trains exactly as before. docs/REAL_CODES.md measures it.
  weight_decay: float = 0.0

  @property
  def decay_steps(self):
    """max(samples_per_decay / batch_size, 1), as the original (integer division)."""
    return max(self.samples_per_decay // self.batch_size, 1)

  def to_dict(self):
    return dataclasses.asdict(self)


def code_layers(depth, layer_depth, layer_count, coded_layer_count=0, source='<code>',
                model='the model'):
  """The one answer to "does a code of `depth` channels fit this model?", shared by training,
  evaluation and the codec: -> its number of layers, or a one-line UserError naming `source`
  (the code's file) and `model` (the model's config or directory).

  A code must have whole layers, and no more of them than the model codes: coded_layer_count
  when > 0, else layer_count. Deeper codes are refused, not truncated: the codec cannot
  store bits the model does not code, so a model trained on truncated codes could never
  compress its own training data.
  """
  if depth % layer_depth:
    raise UserError(describe(source, f'code depth {depth} is not a multiple of layer_depth '
                             f'{layer_depth} of {model}'))
  layers = depth // layer_depth
  limit, key = ((coded_layer_count, 'coded_layer_count') if 0 < coded_layer_count < layer_count
                else (layer_count, 'layer_count'))
  if layers > limit:
    raise UserError(describe(source, f'code depth {depth} is {layers} layers of depth '
                             f'{layer_depth}, but {model} codes at most {limit} ({key}={limit}); '
                             'use a model with more layers'))
  return layers


def checked_fields(values, source, kind, fields):
  """Builds `kind` from a dict; `fields` maps key -> (type, required, check, text): the one
  table-driven check of every JSON config and settings file."""
  if not isinstance(values, dict):
    raise UserError(describe(source, f'must be a JSON object, got {type(values).__name__}'))
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise UserError(describe(source, f'unknown key(s) {unknown}; expected {sorted(fields)}'))
  kwargs = {}
  for key, (typ, required, check, text) in fields.items():
    if key not in values:
      if required:
        raise UserError(describe(source, f'missing key "{key}"'))
      continue
    value = values[key]
    ok_type = (isinstance(value, bool) if typ is bool else
               isinstance(value, typ) and not isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
      value, ok_type = float(value), True
    if not ok_type or not check(value):
      raise UserError(describe(source, f'"{key}" must be {text}, got {value!r}'))
    kwargs[key] = value
  return kind(**kwargs)


def model_config_from_dict(values, source='model_config'):
  """The one check of a model_config, for training, export, the codec and the pipeline."""
  config = checked_fields(values, source, ModelConfig, {
      'layer_depth': (int, True, lambda v: v >= 1, 'a positive int'),
      'layer_count': (int, True, lambda v: v >= 1, 'a positive int'),
      'coded_layer_count': (int, False, lambda v: v >= 0, 'an int >= 0'),
      'channel_causal': (bool, False, lambda v: True, 'true or false'),
      'hidden_depth': (int, False, lambda v: v >= 1, 'a positive int'),
  })
  if config.coded_layer_count > config.layer_count:
    raise UserError(describe(source, f'"coded_layer_count" ({config.coded_layer_count}) exceeds '
                             f'"layer_count" ({config.layer_count})'))
  return config


def train_config_from_dict(values, source='train_config'):
  return checked_fields(values, source, TrainConfig, {
      'batch_size': (int, True, lambda v: v >= 1, 'a positive int'),
      'learning_rate': (float, True, lambda v: v > 0, 'a positive number'),
      'decay_rate': (float, True, lambda v: 0 < v <= 1, 'a number in (0, 1]'),
      'samples_per_decay': (int, True, lambda v: v >= 1, 'a positive int'),
      'adam_epsilon': (float, False, lambda v: v > 0, 'a positive number'),
      'crop': (int, False, lambda v: v >= 0, 'an int >= 0 (0: automatic)'),
      'weight_decay': (float, False, lambda v: v >= 0, 'a number >= 0'),
  })


def load_model_config(path):
  return model_config_from_dict(read_user_json(path), path)


def load_train_config(path):
  return train_config_from_dict(read_user_json(path), path)


def bundled_config_path(name, kind):
  """Path of a config shipped in configs/, e.g. ('synthetic', 'model') -> .../model_config.json."""
  return os.path.join(_CONFIG_ROOT, name, f'{kind}_config.json')
