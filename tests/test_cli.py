"""The one `entropy-coder` command: installed on PATH, every subcommand has --help."""
import os
import subprocess
import sys

import pytest

from entropy_coder import cli

EXPECTED = {'generate', 'sample', 'import-codes', 'train', 'code-length', 'compress', 'decompress',
            'pipeline', 'metrics'}


def _subcommands():
  parser = cli.build_parser()
  action = next(a for a in parser._actions if a.dest == 'command')  # pylint: disable=protected-access
  return action.choices


def test_every_subcommand_is_registered():
  assert EXPECTED <= set(_subcommands())


@pytest.mark.parametrize('name', sorted(EXPECTED) + ['pipeline run', 'pipeline compile',
                                                      'pipeline submit', 'pipeline run-compiled'])
def test_every_subcommand_has_help(name, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(name.split() + ['--help'])
  assert exit_info.value.code == 0
  assert f'usage: entropy-coder {name}' in capsys.readouterr().out


def test_console_script_runs_from_any_directory(tmp_path):
  script = os.path.join(os.path.dirname(sys.executable), 'entropy-coder')
  run = subprocess.run([script, '--help'], cwd=tmp_path, capture_output=True, text=True, timeout=60)
  assert run.returncode == 0 and 'import-codes' in run.stdout and 'code-length' in run.stdout
