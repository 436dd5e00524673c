"""The one place that draws PNGs for the CLI: headless matplotlib and a one-line write error."""
from entropy_coder.errors import UserError, describe


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display on servers and in CI)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure(fig, path):
  """Writes `fig` as a PNG and closes it; an unwritable path is a UserError naming it."""
  fig.tight_layout()
  try:
    fig.savefig(path, dpi=100)
  except OSError as e:
    raise UserError(describe(path, f'cannot write the plot ({e.strerror})')) from None
  finally:
    pyplot().close(fig)
