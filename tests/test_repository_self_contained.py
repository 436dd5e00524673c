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


def test_no_file_cites_what_lies_outside_the_repository():
  found = []
  for name in _tracked_texts():
    if name == 'tests/test_repository_self_contained.py':
      continue
    with open(os.path.join(REPO, name), encoding='utf-8') as f:
      for number, line in enumerate(f, 1):
        found += [f'{name}:{number}: {line.strip()}' for p in _OUTSIDE if p.search(line)]
  assert not found, 'cites outside the repository:\n' + '\n'.join(found)


def test_every_repository_path_a_text_names_exists():
  missing = []
  # Test modules are left out: they name missing paths on purpose (bad-input tables).
  for name in (n for n in _tracked_texts() if not os.path.basename(n).startswith('test_')):
    with open(os.path.join(REPO, name), encoding='utf-8') as f:
      for number, line in enumerate(f, 1):
        for path in _PATH.findall(line):
          if not (_NOT_REPOSITORY.search(path) or _ORIGINAL_REPOSITORY.search(path)
                  or _exists(path, name)):
            missing.append(f'{name}:{number}: {path}')
  assert not missing, 'names files that do not exist:\n' + '\n'.join(missing)


@pytest.mark.parametrize('line, cites_outside', [
    ('see ../' + 'shared/reference', True), ('(ORIGINAL' + '.md §5)', True),
    ('(docs/ORIGINAL.md §5)', False), ('tests/data/reference/README.md', False)])
def test_the_outside_check_tells_the_cases_apart(line, cites_outside):
  assert any(p.search(line) for p in _OUTSIDE) == cites_outside
