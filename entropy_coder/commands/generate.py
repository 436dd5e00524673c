"""`entropy-coder generate`: a synthetic dataset directory (GZIP TFRecord shards + manifest).

The original's `gen_synthetic_dataset.py`, seeded and parallel: one standalone Beam run on the
DirectRunner (`--num-workers 1`: in process; more: one process per worker).
"""
from entropy_coder.errors import UserError

_DEFAULT_COUNT = 1000  # the original's --count default
_DEFAULT_SHAPE = '35,48,8'  # data_gen.synthetic.DATASET_SHAPE, kept literal: no heavy import here
_PROGRESS = 'entropy-coder generate'


def register(subparsers):
  parser = subparsers.add_parser(
      'generate', help='write a synthetic dataset (GZIP TFRecords + manifest.json)',
      description='Generate samples 0..COUNT-1 of the original synthetic code source (seeded: '
      'sample i depends only on the seed and i) into DIR as GZIP TFRecord shards '
      'data-SSSSS-of-NNNNN.tfrecord.gz and manifest.json. Same arguments, same bytes.')
  parser.add_argument('--output-dir', required=True, metavar='DIR',
                      help='dataset directory (created; must be empty unless --overwrite)')
  parser.add_argument('--count', default=str(_DEFAULT_COUNT), metavar='N',
                      help=f'number of samples (default {_DEFAULT_COUNT})')
  parser.add_argument('--seed', default='0', metavar='S', help='seed in [0, 2**64) (default 0)')
  parser.add_argument('--shape', default=_DEFAULT_SHAPE, metavar='H,W,D',
                      help=f'code shape (default {_DEFAULT_SHAPE})')
  parser.add_argument('--num-workers', default='1', metavar='K',
                      help='Beam DirectRunner workers; 1 runs in process (default 1)')
  parser.add_argument('--shards', default=None, metavar='M',
                      help='number of output files (default: one per 5000 samples)')
  parser.add_argument('--bundle-size', default=None, metavar='B',
                      help='samples per Beam work item (default 1024, fewer for big codes)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the dataset files already in DIR')
  parser.set_defaults(func=run)


def parse_int(text, flag, minimum):
  """An int flag checked here, so a bad value is a one-line UserError, not an argparse usage dump."""
  try:
    value = int(text)
  except (TypeError, ValueError):
    raise UserError(f'{flag}: expected an integer, got "{text}"') from None
  if value < minimum:
    raise UserError(f'{flag}: must be at least {minimum}, got {value}')
  return value


def run(args):
  import logging  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import dataset_writer  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import synthetic  # pylint: disable=g-import-not-at-top
  count = parse_int(args.count, '--count', 1)
  seed = parse_int(args.seed, '--seed', 0)
  if seed >= 1 << 64:
    raise UserError(f'--seed: must be below 2**64, got {seed}')
  shape = synthetic.parse_shape(args.shape, '--shape')
  num_workers = parse_int(args.num_workers, '--num-workers', 1)
  shards = None if args.shards is None else parse_int(args.shards, '--shards', 1)
  bundle_size = None if args.bundle_size is None else parse_int(args.bundle_size,
                                                                '--bundle-size', 1)
  # Beam's worker processes forward start-up warnings that would bury the progress lines, and
  # print google-api-core's Python-version FutureWarning themselves (they inherit this variable).
  logging.getLogger('apache_beam').setLevel(logging.ERROR)
  os.environ.setdefault('PYTHONWARNINGS', 'ignore::FutureWarning,ignore::DeprecationWarning')
  started = time.monotonic()
  manifest = dataset_writer.write_dataset(
      args.output_dir, count, seed=seed, shape=shape, num_workers=num_workers, shards=shards,
      bundle_size=bundle_size, overwrite=args.overwrite, progress=_PROGRESS)
  seconds = time.monotonic() - started
  print(f'wrote {count} samples of shape {"x".join(map(str, shape))} (seed {seed}) in '
        f'{len(manifest["shards"])} shards to {args.output_dir} in {seconds:.1f} s '
        f'({count / seconds:.0f} samples/s)')
  return 0
