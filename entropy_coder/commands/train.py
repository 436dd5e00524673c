"""`entropy-coder train`: the Trainer's training code, standalone, with progress and resumption."""
import os
import sys

from entropy_coder.errors import UserError, describe, read_user_json


def register(subparsers):
  parser = subparsers.add_parser(
      'train', help='train the progressive model on codes (same code as the TFX Trainer)',
      description='Trains the progressive model; rerun with the same --train-dir to resume '
      'from the newest checkpoint. Exports the model to <train-dir>/model at the end: the '
      'weights of the evaluation with the lowest eval code length (--eval-every), not '
      'necessarily the last step\'s.')
  parser.add_argument('--model-config', required=True, help='model_config.json (layer_depth, layer_count, ...)')
  parser.add_argument('--train-config', required=True, help='train_config.json (batch_size, learning_rate, ...)')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--input-config', help="the original's input_config.json: {\"data\": TFRecord file}")
  source.add_argument('--examples', help='a directory of TFRecords: an Examples artifact (Split-train/, '
                      'Split-eval/), or the output of `entropy-coder generate`')
  parser.add_argument('--eval-examples', help='TFRecord file or glob to evaluate on (default: Split-eval/ of --examples)')
  parser.add_argument('--train-dir', required=True, help='checkpoints, TensorBoard logs and the exported model')
  parser.add_argument('--steps', type=int, default=5000, help='train until this global step (default 5000)')
  parser.add_argument('--log-every', type=int, default=100, help='progress line every N steps (N >= 1)')
  parser.add_argument('--eval-every', type=int, default=0, help='evaluate every N steps (0: only at the end); the export takes the weights '
                      'of the evaluation with the lowest eval code length')
  parser.add_argument('--seed', type=int, default=0, help='initialisation and shuffle seed')
  parser.add_argument('--xla', choices=('auto', 'on', 'off'), default='auto',
                      help='XLA-compile the training step (auto: on when training on GPUs, off on CPU)')
  parser.set_defaults(func=run)


# The original's input_config.json, in the table format of entropy_coder.trainer.config (the
# same check, and messages, as model_config.json and train_config.json).
_INPUT_CONFIG_CHECKS = {
    'data': (str, True, lambda v: True, 'the path of a TFRecord file'),
    # The original needed true (one shape per dataset); any mix of H x W trains here
    # (trainer/data.py), so both values are accepted and change nothing.
    'unique_code_size': (bool, False, lambda v: True, 'true or false'),
}


def _layer_depth_warning(args, model_config):
  """The import manifest's layer_depth (entropy-coder import-codes) against the model's."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  manifest = os.path.join(args.examples or '', codes_format.MANIFEST_NAME)
  if not args.examples or not os.path.isfile(manifest):
    return None
  import json  # pylint: disable=g-import-not-at-top
  try:
    with open(manifest, encoding='utf-8') as f:
      layer_depth = json.load(f).get('layer_depth')
  except (OSError, ValueError, AttributeError):
    return None  # not ours to judge here; the records themselves are checked
  if not isinstance(layer_depth, int):
    return None
  return codes_format.layer_depth_warning(manifest, layer_depth, model_config.layer_depth,
                                          args.model_config)


def _training_files(args):
  """(train patterns, eval patterns or None) from --input-config or --examples."""
  from entropy_coder.trainer import config as config_lib  # pylint: disable=g-import-not-at-top
  if args.input_config:
    values = config_lib.checked_fields(
        read_user_json(args.input_config), args.input_config, dict, _INPUT_CONFIG_CHECKS)
    return [values['data']], args.eval_examples
  root = args.examples
  if not os.path.isdir(root):
    raise UserError(describe(root, 'no such directory'))
  from entropy_coder.data_gen import splits  # pylint: disable=g-import-not-at-top
  train_dir, eval_dir = (splits.split_dir(root, name) for name in (splits.TRAIN_SPLIT,
                                                                     splits.EVAL_SPLIT))
  if os.path.isdir(train_dir):
    default_eval = os.path.join(eval_dir, '*') if os.path.isdir(eval_dir) else None
    return [os.path.join(train_dir, '*')], args.eval_examples or default_eval
  return [os.path.join(root, '*.tfrecord*')], args.eval_examples


def _check_flags(args):
  for flag, value, minimum in (('--steps', args.steps, 1), ('--log-every', args.log_every, 1),
                               ('--eval-every', args.eval_every, 0)):
    if value < minimum:
      raise UserError(f'{flag} must be at least {minimum}, got {value}')


def _prepare_train_dir(train_dir, model_dir):
  """Creates --train-dir (or takes an existing one) and proves a file can be written in it."""
  import tempfile  # pylint: disable=g-import-not-at-top
  name = f'--train-dir {train_dir}'
  if os.path.exists(train_dir) and not os.path.isdir(train_dir):
    raise UserError(describe(name, 'exists and is not a directory'))
  if os.path.exists(model_dir) and not os.path.isdir(model_dir):
    raise UserError(describe(model_dir, 'exists and is not a directory; the model is exported '
                             'there'))
  try:
    os.makedirs(train_dir, exist_ok=True)
    with tempfile.TemporaryFile(dir=train_dir):
      pass
  except OSError as e:
    raise UserError(describe(name, f'cannot be written ({e.strerror})')) from None


def run(args):
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import config as config_lib  # pylint: disable=g-import-not-at-top
  model_config = config_lib.load_model_config(args.model_config)
  train_config = config_lib.load_train_config(args.train_config)
  _check_flags(args)
  train_patterns, eval_patterns = _training_files(args)
  from entropy_coder.trainer import distribute, train_loop  # pylint: disable=g-import-not-at-top
  xla = {'auto': None, 'on': True, 'off': False}[args.xla]
  # The devices and strategy first: under TF_CONFIG (several workers) the strategy must be
  # built before any other TF op. The Trainer below takes the same one.
  distribute.this_process(xla)
  # Everything is checked before the first step: a bad input fails now, in one line, with
  # nothing written (not after training, with the export skipped).
  train_loop.check_data(model_config, train_patterns, eval_patterns, args.model_config)
  warning = _layer_depth_warning(args, model_config)
  if warning:
    print(warning, file=sys.stderr, flush=True)
  model_dir = os.path.join(args.train_dir, model_files.TRAIN_MODEL_SUBDIR)  # the export
  _prepare_train_dir(args.train_dir, model_dir)
  trainer = train_loop.Trainer(model_config, train_config, args.train_dir, seed=args.seed,
                               model_source=args.model_config, xla=xla)
  trainer.write_run_config()  # the chief's alone, like every write below
  result = trainer.fit(train_patterns, args.steps, eval_patterns=eval_patterns,
                       log_every=args.log_every, eval_every=args.eval_every)
  trainer.export(model_dir)
  if not trainer.is_chief:  # a non-chief worker of a TF_CONFIG cluster: nothing of its own
    print(f'step {result.steps}: train code length {result.train_code_length:.4f} bits/bit; '
          f'{trainer.cluster.role()}: the chief wrote the checkpoints and the model '
          f'({len(trainer.temporary_dirs_removed)} temporary save(s) of this worker removed)')
    return
  print(f'step {result.steps}: train code length {result.train_code_length:.4f} bits/bit'
        + (f', eval {result.eval_code_length:.4f} bits/bit (pooled: total bits / total code '
           'bits)' if eval_patterns else ''))
  note = train_loop.overfitting_note(result.train_code_length, result.eval_code_length)
  if note:
    print(f'note: {note}')
  print(train_loop.kept_step_line(trainer.best, result.steps, result.eval_code_length))
  print(f'model exported to {model_dir}')
