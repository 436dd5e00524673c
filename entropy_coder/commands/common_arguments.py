"""What several subcommands share: the `--model` argument, the synthetic source's `--seed` and
`--shape`, integer flags checked as one-line errors, and the JSON / text / PNG output.

Light on purpose (no numpy, numba or TensorFlow): every command's `register` runs at start-up.
"""
from entropy_coder.errors import UserError

SEED_LIMIT = 1 << 64  # the synthetic source's seeds and sample indices are in [0, 2**64)

MODEL_HELP = 'model directory (train output, Trainer artifact or Pusher destination)'


def add_model_argument(parser):
  """`--model DIR`, as every command that reads a trained model takes it."""
  parser.add_argument('--model', required=True, help=MODEL_HELP)


def check_plot(args):
  """--plot PATH checked before the work (the model run, the store read), so that a bad path
  fails in a second, not after it; the plot may replace an existing file."""
  if args.plot:
    from entropy_coder import output_files  # pylint: disable=g-import-not-at-top
    output_files.check_output_file(args.plot, overwrite=True, flag='--plot')


def show(args, as_json, as_text, plot, plotted):
  """Prints `as_json()` with --json, else `as_text()`; with --plot PATH draws `plot(PATH)` and,
  in text mode, says where (`plotted` PATH)."""
  print(as_json() if args.json else as_text())
  if args.plot:
    plot(args.plot)
    if not args.json:
      print(f'{plotted} {args.plot}')


def parse_int(text, flag, minimum):
  """An int flag checked here, so that a bad value is a one-line UserError, not an argparse usage
  dump."""
  try:
    value = int(text)
  except (TypeError, ValueError):
    raise UserError(f'{flag}: expected an integer, got "{text}"') from None
  if value < minimum:
    raise UserError(f'{flag}: must be at least {minimum}, got {value}')
  return value


def add_seed_argument(parser):
  """`--seed S` of the synthetic source (generate, sample), read with `parse_seed`."""
  parser.add_argument('--seed', default='0', metavar='S', help='seed in [0, 2**64) (default 0)')


def parse_seed(text, flag='--seed'):
  """A synthetic source seed (or sample index) in [0, 2**64)."""
  value = parse_int(text, flag, 0)
  if value >= SEED_LIMIT:
    raise UserError(f'{flag}: must be below 2**64, got {value}')
  return value


def add_shape_argument(parser, default):
  """`--shape H,W,D` of synthetic codes, `default` a (H, W, D) of data_gen/synthetic_defaults.py;
  data_gen.synthetic.parse_shape reads it."""
  text = ','.join(map(str, default))
  parser.add_argument('--shape', default=text, metavar='H,W,D',
                      help=f'code shape (default {text})')
