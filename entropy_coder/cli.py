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

from entropy_coder.errors import UserError

# Module names under entropy_coder.commands, in the order `--help` lists them.
_COMMAND_MODULES = (
    'generate',
    'sample',
    'import_codes',
    'train',
    'code_length',
    'compress',
    'pipeline',
    'metrics',
)


def build_parser():
  parser = argparse.ArgumentParser(
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


def main(argv=None):
  _quiet_libraries()
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    status = args.func(args)
  except UserError as e:
    print(f'entropy-coder {args.command}: error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f'entropy-coder {args.command}: interrupted', file=sys.stderr)
    return 130
  return int(status or 0)


if __name__ == '__main__':
  sys.exit(main())
