"""The one exception type the CLI turns into a one-line message and a non-zero exit.

Every check of user input (files, configs, shapes, model directories) raises `UserError` with a
message that names the offending file and the problem, so that no traceback from deep inside
TensorFlow, Beam or numpy ever reaches a user.
"""


class UserError(Exception):
  """Bad input from the user: printed as one line by the CLI, exit status 2."""


def describe(path, problem):
  """Formats the standard one-line message: '<path>: <problem>'."""
  return f'{path}: {problem}'
