"""The one place that draws PNGs for the CLI: headless matplotlib and a one-line write error."""
from entropy_coder.errors import UserError, describe


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display on servers and in CI)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure(fig, path):
  """Writes `fig` as a PNG at exactly `path` (matplotlib would append ".png" to a name without
  it) and closes it, atomically: an unwritable path is a UserError naming it, and a failed
  write leaves no partial file."""
  from entropy_coder import output_files  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  try:
    with output_files.atomic_output(path, overwrite=True) as temp:
      fig.savefig(temp, dpi=100, format='png')
  except OSError as e:
    raise UserError(describe(path, f'cannot write the plot ({e.strerror})')) from None
  finally:
    pyplot().close(fig)
