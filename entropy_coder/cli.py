"""`entropy-coder`: the one command-line front of the product.

Each subcommand lives in its own module under `entropy_coder.commands`; a module exposes
`register(subparsers)` and sets `func` on its parser. Modules import TensorFlow, Beam or TFX only
inside their `func`, so `entropy-coder --help` and every `<command> --help` stay instant.
"""
import argparse
import importlib
import os
import sys
import warnings

from entropy_coder.errors import UserError, describe

# Module names under entropy_coder.commands, in the order `--help` lists them. A module is named
# after its command (`import-codes` -> import_codes), but `pipeline`'s is pipeline_command: a
# commands module named `pipeline` would read as a twin of the pipeline/ package it drives.
_COMMAND_MODULES = (
    'generate',
    'sample',
    'import_codes',
    'train',
    'code_length',
    'compress',
    'train_encoder',
    'encode_images',
    'decode_images',
    'pipeline_command',
    'metrics',
)


class _UsageError(Exception):
  """A command line argparse refuses: reported by `main` as one line, exit status 2."""

  def __init__(self, prog, message):
    super().__init__(message)
    self.prog = prog


class _Parser(argparse.ArgumentParser):
  """argparse, but a bad command line is one line (`<prog>: error: <message> (see --help)`)
  instead of the usage dump and SystemExit that argparse prints; subparsers inherit it."""

  def error(self, message):
    raise _UsageError(self.prog, message)

  def parse_args(self, args=None, namespace=None):
    # argparse reports flags no parser knew from the top parser; name the subcommand instead.
    args, extras = self.parse_known_args(args, namespace)
    if extras:
      prog = ' '.join([self.prog] + [getattr(args, key) for key in ('command', 'action')
                                     if getattr(args, key, None)])
      raise _UsageError(prog, f'unrecognized arguments: {" ".join(extras)}')
    return args


def build_parser():
  parser = _Parser(
      prog='entropy-coder',
      description='Neural entropy coder for binary image codes: data, training, '
      'real compression, and the TFX / Kubeflow pipeline.')
  subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
  subparsers.required = True
  for name in _COMMAND_MODULES:
    try:
      module = importlib.import_module(f'entropy_coder.commands.{name}')
    except ModuleNotFoundError as e:
      if e.name == f'entropy_coder.commands.{name}':
        continue  # command not built yet in this checkout
      raise
    module.register(subparsers)
  return parser


def _quiet_libraries():
  """TensorFlow and google-api-core print start-up noise that buries our progress lines."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  warnings.filterwarnings('ignore', category=FutureWarning)
  warnings.filterwarnings('ignore', category=DeprecationWarning)


def _one_line(text):
  return ' '.join(str(text).split())


def main(argv=None):
  _quiet_libraries()
  parser = build_parser()
  try:
    args = parser.parse_args(argv)
  except _UsageError as e:
    print(f'{e.prog}: error: {_one_line(e)} (see {e.prog} --help)', file=sys.stderr)
    return 2
  try:
    status = args.func(args)
  except UserError as e:
    print(f'entropy-coder {args.command}: error: {_one_line(e)}', file=sys.stderr)
    return 2
  except OSError as e:
    # The safety net for a file the commands did not check first: still one line naming it.
    if e.filename is None:
      raise
    print(f'entropy-coder {args.command}: error: '
          f'{_one_line(describe(e.filename, e.strerror or type(e).__name__))}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f'entropy-coder {args.command}: interrupted', file=sys.stderr)
    return 130
  return int(status or 0)


if __name__ == '__main__':
  sys.exit(main())
