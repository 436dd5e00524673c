"""The one exception type the CLI turns into a one-line message and a non-zero exit.

Every check of user input (files, configs, shapes, model directories) raises `UserError` with a
message that names the offending file and the problem, so that no traceback from deep inside
TensorFlow, Beam or numpy ever reaches a user.
"""
import contextlib


class UserError(Exception):
  """Bad input from the user: printed as one line by the CLI, exit status 2."""


def describe(path, problem):
  """Formats the standard one-line message: '<path>: <problem>'."""
  return f'{path}: {problem}'


@contextlib.contextmanager
def opened_user_file(path, expected, mode='r', missing='no such file'):
  """`open(path, mode)` whose failures, opening or reading, are one-line UserErrors naming the
  file: `missing` when it does not exist, 'is a directory; expected <expected>', or the OS's
  reason. Errors of parsing what was read stay the caller's."""
  try:
    f = open(path, mode, **({} if 'b' in mode else {'encoding': 'utf-8'}))  # pylint: disable=consider-using-with
  except FileNotFoundError:
    raise UserError(describe(path, missing)) from None
  except IsADirectoryError:
    raise UserError(describe(path, f'is a directory; expected {expected}')) from None
  except OSError as e:
    raise UserError(describe(path, f'cannot read ({e.strerror})')) from None
  with f:
    try:
      yield f
    except OSError as e:
      if isinstance(e, UserError):
        raise
      raise UserError(describe(path, f'cannot read ({e.strerror})')) from None


def read_user_json(path):
  """The JSON document in a user's file (a config, settings, a model or encoder directory's
  file): a one-line UserError naming it if it cannot be read or is not valid JSON."""
  import json  # pylint: disable=g-import-not-at-top
  try:
    with opened_user_file(path, 'a JSON file') as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(describe(path, f'not valid JSON ({e})')) from None
