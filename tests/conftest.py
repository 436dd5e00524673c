"""Shared test set-up: quiet TensorFlow's start-up noise for every test process."""
import os
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.filterwarnings('ignore', category=FutureWarning)


def pytest_terminal_summary(terminalreporter):
  """Always print the skip count: from a fresh clone it must be 0 (GPU-only tests excepted), so a
  test that starts skipping (a fixture gone missing, say) is seen, not silently lost."""
  skipped = terminalreporter.stats.get('skipped', [])
  terminalreporter.write_line(f'skipped tests: {len(skipped)}'
                              + (' (reasons in the short test summary above)' if skipped else ''))
