"""`entropy-coder train-encoder`: trains (or resumes) the reference image encoder.

The arguments and the report; the training is entropy_coder.image_encoder.training.
"""
import sys


def _defaults():
  from entropy_coder.image_encoder import config as config_lib  # pylint: disable=g-import-not-at-top  (light)
  return config_lib.EncoderConfig()


def register(subparsers):
  defaults = _defaults()
  parser = subparsers.add_parser(
      'train-encoder', help='train the reference image encoder (pictures -> binary codes)',
      description='Trains the residual binary image encoder (docs/IMAGE_ENCODER.md) into -o DIR '
      'on random crops of the given pictures, or by default of the photographs shipped in '
      'matplotlib and scikit-learn (all but grace_hopper, kept for the PSNR table). Running it '
      'again on the same DIR resumes from the newest checkpoint; --steps may grow.')
  parser.add_argument('-o', '--output', required=True, metavar='DIR',
                      help='encoder directory (encoder.json + checkpoints/)')
  parser.add_argument('--images', nargs='+', metavar='IMAGE',
                      help='training pictures: files or directories (default: the packaged photos)')
  parser.add_argument('--eval-images', nargs='+', metavar='IMAGE',
                      help='pictures of the PSNR table (default: the packaged grace_hopper)')
  parser.add_argument('--bits', type=int, default=defaults.bits_per_iteration,
                      help=f'bits per iteration per code position (default '
                      f'{defaults.bits_per_iteration}; the paper: 32)')
  parser.add_argument('--iterations', type=int, default=defaults.iterations,
                      help=f'iterations (default {defaults.iterations}; the paper: 16)')
  parser.add_argument('--channels', default=','.join(map(str, defaults.channels)),
                      help=f'encoder widths, 4 ints (default '
                      f'{",".join(map(str, defaults.channels))})')
  parser.add_argument('--crop', type=int, default=defaults.crop_size,
                      help=f'training crop size, a multiple of 16 (default {defaults.crop_size})')
  parser.add_argument('--batch-size', type=int, default=defaults.batch_size,
                      help=f'crops per step (default {defaults.batch_size})')
  parser.add_argument('--steps', type=int, default=defaults.steps,
                      help=f'total training steps (default {defaults.steps})')
  parser.add_argument('--learning-rate', type=float, default=defaults.learning_rate,
                      help=f'Adam learning rate (default {defaults.learning_rate})')
  parser.add_argument('--seed', type=int, default=defaults.seed,
                      help=f'seed of the weights, crops and binariser (default {defaults.seed})')
  parser.set_defaults(func=run)


def config_from_args(args):
  from entropy_coder.errors import UserError  # pylint: disable=g-import-not-at-top
  from entropy_coder.image_encoder import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    channels = [int(v) for v in args.channels.split(',')]
  except ValueError:
    raise UserError(f'--channels: expected 4 comma-separated ints, got {args.channels!r}') from None
  return config_lib.config_from_dict({
      'bits_per_iteration': args.bits, 'iterations': args.iterations, 'channels': channels,
      'crop_size': args.crop, 'batch_size': args.batch_size, 'steps': args.steps,
      'learning_rate': args.learning_rate, 'seed': args.seed}, 'train-encoder flags')


def run(args):
  from entropy_coder.image_encoder import training  # pylint: disable=g-import-not-at-top
  requested = config_from_args(args)
  config = training.resolve_config(args.output, requested, requested.steps)
  pictures = training.read_pictures(args.images) if args.images else None
  eval_pictures = training.read_pictures(args.eval_images) if args.eval_images else None
  print(f'training {args.output}: {config.iterations} iterations x {config.bits_per_iteration} '
        f'bits ({config.bits_per_pixel():.4f} bits/pixel), {config.steps} steps of '
        f'{config.batch_size} crops {config.crop_size}x{config.crop_size}',
        file=sys.stderr, flush=True)
  document = training.train(args.output, config, pictures, eval_pictures)
  print(f'trained {args.output}: {document["trained_steps"]} steps')
  print('\n'.join(training.format_evaluation(document['evaluation'])))
  return 0
