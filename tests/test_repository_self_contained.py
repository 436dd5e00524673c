"""The repository stands alone: no file reaches outside it, and every file a text names exists.

A fresh clone has nothing beside it, so a test, a docstring or a doc that points outside the
repository (the workspace's shared folder, a fact sheet that is not committed) is a broken
promise; so is a docstring naming a module that was renamed.
"""
import os
import re
import subprocess
import sys

import pytest

from helpers import REPO

# What a file must never cite: the folders and notes that sat beside the repository when it was
# written. Built from pieces so that this file does not match itself.
_OUTSIDE = [re.compile(p) for p in (r'\.\./' + 'shared', r'(?<![\w/])' + 'shared/reference',
                                    'STACK' + '-NOTES', r'(?<![\w/])ORIGINAL' + r'\.md')]
# A repository path as texts write it: folders and a file name with one of our extensions.
_PATH = re.compile(r'(?<![\w./:-])((?:[\w.-]+/)+[\w.-]+\.(?:py|md|json|npz|nec|txt|yaml|ini|cfg|toml))\b')
_TEXT_SUFFIXES = ('.py', '.md', '.ini', '.toml', '.cfg', '.txt', 'Makefile', 'Dockerfile', '.json')
# Paths that name something a run creates or a user supplies, not a repository file.
_NOT_REPOSITORY = re.compile(r'^(runs|tmp|/|~|\w+://|\.\.\./|DIR/)|(^|/)(model|codes|out)/')
# Files of the 2017 original (tensorflow/models, research/compression/entropy_coder), cited by
# their path there.
_ORIGINAL_REPOSITORY = re.compile(r'^(research/compression/entropy_coder/)?(dataset|core|lib|progressive)/')
# A module as texts name it, `entropy_coder.<folder>.<module>[.<name>]`, and a test or bench file
# named without its folder.
_MODULE = re.compile(r'(?<![\w.])entropy_coder(?:\.\w+)+')
_BARE_FILE = re.compile(r'(?<![\w./-])((?:test|bench)_\w+\.py)\b')
_FOLDERS = ('codec', 'trainer', 'pipeline', 'components', 'data_gen', 'image_encoder')  # setup.py


def _tracked_texts():
  files = subprocess.run(['git', 'ls-files'], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout.split()
  return [f for f in files if f.endswith(_TEXT_SUFFIXES) and os.path.isfile(os.path.join(REPO, f))]


def _exists(path, referrer):
  candidates = [os.path.join(REPO, path), os.path.join(REPO, os.path.dirname(referrer), path)]
  if path.startswith('entropy_coder/'):  # the import package maps the product folders (setup.py)
    candidates.append(os.path.join(REPO, path.split('/', 1)[1]))
  # A file of an installed dependency, named from its package down.
  candidates += [os.path.join(site, path) for site in sys.path if os.path.isdir(site)]
  return any(os.path.exists(c) for c in candidates)


_THIS_FILE = 'tests/test_repository_self_contained.py'  # it names bad cases on purpose


def _lines(tests=True):
  """(file, line number, line) of every tracked text but this file; `tests=False` leaves the
  test modules out too (their bad-input tables name missing paths on purpose)."""
  for name in _tracked_texts():
    if name == _THIS_FILE or (not tests and os.path.basename(name).startswith('test_')):
      continue
    with open(os.path.join(REPO, name), encoding='utf-8') as f:
      for number, line in enumerate(f, 1):
        yield name, number, line


def test_no_file_cites_what_lies_outside_the_repository():
  found = [f'{name}:{number}: {line.strip()}' for name, number, line in _lines()
           for p in _OUTSIDE if p.search(line)]
  assert not found, 'cites outside the repository:\n' + '\n'.join(found)


def test_every_repository_path_a_text_names_exists():
  missing = [f'{name}:{number}: {path}' for name, number, line in _lines(tests=False)
             for path in _PATH.findall(line)
             if not (_NOT_REPOSITORY.search(path) or _ORIGINAL_REPOSITORY.search(path)
                     or _exists(path, name))]
  assert not missing, 'names files that do not exist:\n' + '\n'.join(missing)


def _module_path(parts):
  """The repository path of package or module entropy_coder.<parts...>, without a suffix."""
  if parts and parts[0] in _FOLDERS:
    return os.path.join(REPO, *parts)
  return os.path.join(REPO, 'entropy_coder', *parts)


def _module_problem(dotted):
  """None if `dotted` (entropy_coder.a.b.name) names an existing module and, after it, a name
  that module holds; else what is missing."""
  parts, found = dotted.split('.')[1:], []
  for i, part in enumerate(parts):
    base = _module_path(found + [part])
    if os.path.isfile(os.path.join(base, '__init__.py')):
      found.append(part)
      continue
    if os.path.isfile(base + '.py'):
      if i + 1 == len(parts):
        return None
      holder, name = base + '.py', parts[i + 1]
    else:  # not a module: a name the package itself defines, or nothing
      holder, name = os.path.join(_module_path(found), '__init__.py'), part
    with open(holder, encoding='utf-8') as f:
      if re.search(rf'\b{re.escape(name)}\b', f.read()):
        return None
    return f'{os.path.relpath(holder, REPO)} has no {name}'
  return None


def test_every_module_a_text_names_exists():
  """A docstring or doc naming entropy_coder.<folder>.<module>[.<name>] after a rename fails
  here: the module must exist and hold the name."""
  missing = [f'{name}:{number}: {dotted}: {_module_problem(dotted)}'
             for name, number, line in _lines(tests=False)
             for dotted in _MODULE.findall(line) if _module_problem(dotted)]
  assert not missing, 'names modules that do not exist:\n' + '\n'.join(missing)


def test_every_test_or_bench_file_named_without_its_folder_exists():
  """A test or bench module named without its folder is a file of tests/ or bench/."""
  missing = [f'{name}:{number}: {file}' for name, number, line in _lines()
             for file in _BARE_FILE.findall(line)
             if not any(os.path.isfile(os.path.join(REPO, folder, file))
                        for folder in ('tests', 'bench'))]
  assert not missing, 'names test or bench files that do not exist:\n' + '\n'.join(missing)


@pytest.mark.parametrize('dotted, problem', [
    ('entropy_coder.trainer.code_length_ops.code_length', None),
    ('entropy_coder.pipeline.configs', None),
    ('entropy_coder.components.NpzCodeImport', None),  # a name of the package's __init__
    ('entropy_coder.trainer.code_length', 'trainer/__init__.py has no code_length'),
    ('entropy_coder.trainer.spec.no_such_fact', 'trainer/spec.py has no no_such_fact'),
])
def test_the_module_check_finds_a_renamed_module_or_name(dotted, problem):
  assert _module_problem(dotted) == problem
  assert _BARE_FILE.findall('see test_metrics_thresholds.py and tests/test_x.py') == [
      'test_metrics_thresholds.py']


@pytest.mark.parametrize('line, cites_outside', [
    ('see ../' + 'shared/reference', True), ('(ORIGINAL' + '.md §5)', True),
    ('(docs/ORIGINAL.md §5)', False), ('tests/data/reference/README.md', False)])
def test_the_outside_check_tells_the_cases_apart(line, cites_outside):
  assert any(p.search(line) for p in _OUTSIDE) == cites_outside
