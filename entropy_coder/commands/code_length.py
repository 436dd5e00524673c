"""`entropy-coder code-length`: the theoretical code length of codes under a trained model.

What the original's `entropy_coder_single.py` printed as "Additional compression ratio" is the
mean -log2 p(bit), a code length in bits per bit; the compression ratio is its inverse.
"""


def register(subparsers):
  parser = subparsers.add_parser(
      'code-length', help='code length (bits/bit) and compression ratio of codes under a model',
      description='Prints total bits, bits per bit, the compression ratio (1 / bits per bit) and a '
      'per-layer table for a .npz code or a TFRecord file of codes.')
  parser.add_argument('--model', required=True, help='model directory (train output, Trainer artifact or Pusher destination)')
  parser.add_argument('--input', required=True, help='.npz code (original format) or TFRecord file/glob of codes')
  parser.add_argument('--plot', help='write a PNG of the per-layer code length')
  parser.add_argument('--json', action='store_true', help='print the result as JSON')
  parser.set_defaults(func=run)


def run(args):
  import json  # pylint: disable=g-import-not-at-top
  from entropy_coder import output_files  # pylint: disable=g-import-not-at-top
  if args.plot:  # before the work: a bad --plot path fails in a second, not after the model ran
    output_files.check_output_file(args.plot, overwrite=True, flag='--plot')
  from entropy_coder.trainer import evaluate  # pylint: disable=g-import-not-at-top
  result = evaluate.code_length_of_input(args.model, args.input)
  if args.json:
    print(json.dumps(result, indent=2))
  else:
    print(evaluate.format_report(result))
  if args.plot:
    evaluate.plot_per_layer(result, args.plot)
    if not args.json:
      print(f'plot written to {args.plot}')
