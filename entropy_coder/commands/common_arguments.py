"""What several subcommands share: the `--model` argument and the JSON / text / PNG output."""

MODEL_HELP = 'model directory (train output, Trainer artifact or Pusher destination)'


def add_model_argument(parser):
  """`--model DIR`, as every command that reads a trained model takes it."""
  parser.add_argument('--model', required=True, help=MODEL_HELP)


def show(args, as_json, as_text, plot, plotted):
  """Prints `as_json()` with --json, else `as_text()`; with --plot PATH draws `plot(PATH)` and,
  in text mode, says where (`plotted` PATH)."""
  print(as_json() if args.json else as_text())
  if args.plot:
    plot(args.plot)
    if not args.json:
      print(f'{plotted} {args.plot}')
