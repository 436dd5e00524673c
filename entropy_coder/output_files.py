"""Output files of the CLI: checked before the work, written atomically (temp file + rename).

Every command that writes a file checks its output path first (`check_output_file`), so a
typo in `-o` fails in a second with one line, not after minutes of work with a traceback; and
writes through `atomic_output`, so a failure or an interrupt never leaves a half-written file
under the user's name: the data goes to a hidden temporary file beside the target, which is
renamed over it only once complete (a rename within one directory is atomic on POSIX).
"""
import contextlib
import os
import tempfile

from entropy_coder.errors import UserError, describe

_TEMP_SUFFIX = '.partial'


def check_output_file(path, overwrite=False, flag=None, probe=True):
  """Refuses an output path that cannot receive a file; -> its absolute path.

  Refused: an existing directory, an existing file without `overwrite`, a missing parent
  directory or a parent that is not a directory, and a directory no file can be created in
  (probed by creating and removing a temporary file, which also catches read-only mounts and
  permissions that os.access misjudges).
  """
  name = f'{flag} {path}' if flag else path
  path = os.fspath(path)
  if not path:
    raise UserError(f'{flag or "output"}: empty file name')
  absolute = os.path.abspath(path)
  if os.path.isdir(absolute):
    raise UserError(describe(name, 'is a directory; give a file name'))
  if os.path.lexists(absolute) and not overwrite:
    raise UserError(describe(name, 'exists; pass --overwrite to replace it'))
  parent = os.path.dirname(absolute)
  if not os.path.isdir(parent):
    problem = 'is not a directory' if os.path.exists(parent) else 'does not exist'
    raise UserError(describe(name, f'cannot be written: {parent} {problem}'))
  if probe:
    _probe(parent, f'.{os.path.basename(absolute)}.', name)
  return absolute


def check_output_dir(path, flag=None, why=''):
  """Refuses an output directory that does not exist, is not a directory or cannot receive a
  file (probed as check_output_file does); -> its absolute path. `why` ends the message."""
  name = f'{flag} {path}' if flag else path
  path = os.fspath(path)
  if not path:
    raise UserError(f'{flag or "output"}: empty directory name')
  absolute = os.path.abspath(path)
  if not os.path.isdir(absolute):
    problem = 'is not a directory' if os.path.exists(absolute) else 'does not exist'
    raise UserError(describe(name, problem + (f'; {why}' if why else '')))
  _probe(absolute, '.entropy-coder.', name)
  return absolute


def _probe(directory, prefix, name):
  """Creates and removes a temporary file in `directory`: UserError naming `name` if it cannot
  (read-only mounts and permissions os.access misjudges included)."""
  try:
    fd, path = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=_TEMP_SUFFIX)
  except OSError as e:
    raise UserError(describe(name, f'cannot be written ({e.strerror})')) from None
  os.close(fd)
  os.remove(path)


@contextlib.contextmanager
def atomic_output(path, overwrite=False, flag=None):
  """Checks `path` now, yields a temporary path beside it; on success renames it to `path`.

  Use it around the whole work, so the check comes first:

      with atomic_output(args.output, args.overwrite, '-o') as temp:
        ... work ...; write to `temp`

  On any exception (a UserError, a crash, Ctrl-C) the temporary file is removed and `path` is
  left as it was.
  """
  absolute = check_output_file(path, overwrite, flag, probe=False)  # the temp file probes
  directory, base = os.path.split(absolute)
  try:
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f'.{base}.', suffix=_TEMP_SUFFIX)
  except OSError as e:
    raise UserError(describe(f'{flag} {path}' if flag else path,
                             f'cannot be written ({e.strerror})')) from None
  os.close(fd)
  try:
    yield temp
    if not overwrite and os.path.lexists(absolute):  # appeared while we worked
      raise UserError(describe(path, 'was created by someone else meanwhile; pass --overwrite '
                               'to replace it'))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would have given
    os.replace(temp, absolute)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(temp)
    raise
