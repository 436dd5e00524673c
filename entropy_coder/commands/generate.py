"""`entropy-coder generate`: a synthetic dataset directory (GZIP TFRecord shards + manifest).

The original's `gen_synthetic_dataset.py`, seeded and parallel: one standalone Beam run on the
DirectRunner (`--num-workers 1`: in process; more: one process per worker).
"""
from entropy_coder.commands import common_arguments
from entropy_coder.commands.common_arguments import parse_int
from entropy_coder.data_gen import synthetic_defaults as defaults
_PROGRESS = 'entropy-coder generate'


def register(subparsers):
  parser = subparsers.add_parser(
      'generate', help='write a synthetic dataset (GZIP TFRecords + manifest.json)',
      description='Generate samples 0..COUNT-1 of the original synthetic code source (seeded: '
      'sample i depends only on the seed and i) into DIR as GZIP TFRecord shards '
      'data-SSSSS-of-NNNNN.tfrecord.gz and manifest.json. Same arguments, same bytes.')
  parser.add_argument('--output-dir', required=True, metavar='DIR',
                      help='dataset directory (created; must be empty unless --overwrite)')
  parser.add_argument('--count', default=str(defaults.DATASET_COUNT), metavar='N',
                      help=f'number of samples (default {defaults.DATASET_COUNT})')
  common_arguments.add_seed_argument(parser)
  common_arguments.add_shape_argument(parser, defaults.DATASET_SHAPE)
  parser.add_argument('--num-workers', default='1', metavar='K',
                      help='Beam DirectRunner workers; 1 runs in process (default 1)')
  parser.add_argument('--shards', default=None, metavar='M',
                      help='number of output files (default: one per '
                      f'{defaults.SAMPLES_PER_SHARD} samples)')
  parser.add_argument('--bundle-size', default=None, metavar='B',
                      help=f'samples per Beam work item (default {defaults.DEFAULT_BUNDLE_SIZE}, '
                      'fewer for big codes)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the dataset files already in DIR')
  parser.set_defaults(func=run)


def run(args):
  import logging  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import dataset_writer  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import synthetic  # pylint: disable=g-import-not-at-top
  count = parse_int(args.count, '--count', 1)
  seed = common_arguments.parse_seed(args.seed)
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
