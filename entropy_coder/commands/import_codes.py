"""`entropy-coder import-codes`: a directory of `.npz` codes -> train/eval TFRecords, outside TFX.

The arguments and the report; the conversion is entropy_coder.data_gen.npz_import (the same as
the pipeline's NpzCodeImport component).
"""
import sys


def register(subparsers):
  parser = subparsers.add_parser(
      'import-codes',
      help='convert a directory of .npz codes into train/eval TFRecords',
      description='Converts the *.npz codes (original format) of --input-dir into GZIP TFRecord '
      'splits Split-<name>/ and a manifest.json in --output-dir. Files are taken in name order; '
      'file i goes to the split chosen by i modulo the total weight. All files are checked '
      'first: one bad file stops the run and nothing is written.')
  parser.add_argument('--input-dir', required=True, help='directory holding the *.npz codes')
  parser.add_argument('--output-dir', required=True, help='where the splits are written')
  parser.add_argument('--splits', default='train:9,eval:1',
                      help="split names and weights by file index (default 'train:9,eval:1'); "
                      'train and eval are required')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the splits and manifest of a non-empty --output-dir')
  parser.set_defaults(func=run)


def _print_progress(done, total):
  end = '\n' if done == total else ''
  print(f'\rchecked {done}/{total} files', end=end, file=sys.stderr, flush=True)


def run(args):
  from entropy_coder.data_gen import npz_import  # pylint: disable=g-import-not-at-top  (Beam, TF)
  manifest = npz_import.import_codes(args.input_dir, args.output_dir, args.splits, args.overwrite,
                                     progress=_print_progress)
  counts = ', '.join(f'{name} {split["num_examples"]}' for name, split in manifest['splits'].items())
  print(f'imported {manifest["source"]["num_files"]} codes (layer_depth '
        f'{manifest["layer_depth"]}, depth {manifest["code_depth"]}, '
        f'{len(manifest["code_shapes"])} shape(s)) into {args.output_dir}: {counts}')
  return 0
