"""`entropy-coder sample`: one synthetic code as the original's single-sample `.npz`.

The original's `gen_synthetic_single.py`: shape [31, 36, 8] and layer depth 2 by default (a
different size from the dataset on purpose: the model is fully convolutional), now seeded.
"""
from entropy_coder.commands import common_arguments
from entropy_coder.commands.common_arguments import parse_int
from entropy_coder.data_gen import synthetic_defaults
from entropy_coder.errors import UserError


def register(subparsers):
  parser = subparsers.add_parser(
      'sample', help='write one synthetic code as an .npz (the original single-sample format)',
      description='Write sample INDEX of the synthetic source with SEED as an .npz with keys '
      '"shape" = [D/L, 1, H, W, L] and "codes" = np.packbits of the bits, as the original '
      'image encoder and gen_synthetic_single.py wrote it.')
  parser.add_argument('--output', required=True, metavar='FILE.npz', help='file to write')
  common_arguments.add_shape_argument(parser, synthetic_defaults.SAMPLE_SHAPE)
  parser.add_argument('--layer-depth', default=str(synthetic_defaults.SAMPLE_LAYER_DEPTH),
                      metavar='L', help='bits per iteration; must divide D (default '
                      f'{synthetic_defaults.SAMPLE_LAYER_DEPTH})')
  common_arguments.add_seed_argument(parser)
  parser.add_argument('--index', default='0', metavar='I',
                      help='which sample of the seed\'s stream (default 0)')
  parser.set_defaults(func=run)


def run(args):
  import os  # pylint: disable=g-import-not-at-top
  from entropy_coder import codes_format, output_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import synthetic  # pylint: disable=g-import-not-at-top
  output_files.check_output_file(args.output, overwrite=True, flag='--output')
  shape = synthetic.parse_shape(args.shape, '--shape')
  layer_depth = parse_int(args.layer_depth, '--layer-depth', 1)
  if shape[2] % layer_depth:
    raise UserError(f'--layer-depth: {layer_depth} does not divide the code depth {shape[2]}')
  seed = common_arguments.parse_seed(args.seed)
  index = common_arguments.parse_seed(args.index, '--index')
  code = synthetic.generate_codes(seed, [index], shape=shape)[0]
  # Written atomically; a file object, so that numpy does not append ".npz" to a name that
  # lacks it. (An existing file is replaced, as it always was.)
  with output_files.atomic_output(args.output, overwrite=True, flag='--output') as temp:
    with open(temp, 'wb') as f:
      codes_format.write_npz(f, code, layer_depth)
  print(f'wrote sample {index} (seed {seed}) of shape {"x".join(map(str, shape))}, layer depth '
        f'{layer_depth}, to {os.path.abspath(args.output)}')
  return 0
