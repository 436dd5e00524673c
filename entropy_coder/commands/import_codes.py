"""`entropy-coder import-codes`: a directory of `.npz` codes -> train/eval TFRecords, outside TFX.

The same conversion as the pipeline's NpzCodeImport component (both apply
`entropy_coder.components.npz_code_import.ImportNpzCodes`), run as a standalone Beam pipeline:
it writes `Split-<name>/data_tfrecord-*.gz` (GZIP TFRecords of our tf.Example layout, the same
layout an Examples artifact has) and a `manifest.json` saying what was imported.

Nothing is half-written: every input file is checked before the Beam run starts, the splits are
written into a staging folder and moved into place only after the run succeeded, and the
manifest is written last.
"""
import json
import os
import sys

MANIFEST_NAME = 'manifest.json'
MANIFEST_FORMAT = 'entropy-coder-imported-codes'
MANIFEST_VERSION = 1
_STAGING_NAME = '.import-codes.staging'
_SPLIT_PREFIX = 'Split-'


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


def _check_output_dir(output_dir, input_dir, overwrite):
  """Refuses to mix our output with existing content unless --overwrite."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  if os.path.abspath(output_dir) == os.path.abspath(input_dir):
    raise UserError(describe(output_dir, '--output-dir must differ from --input-dir'))
  if tf.io.gfile.exists(output_dir):
    if not tf.io.gfile.isdir(output_dir):
      raise UserError(describe(output_dir, 'exists and is not a directory'))
    if tf.io.gfile.listdir(output_dir) and not overwrite:
      raise UserError(describe(output_dir, 'is not empty; pass --overwrite to replace its '
                               'splits and manifest'))
  if '://' not in output_dir:  # a local path: its nearest existing ancestor must take a folder
    ancestor = os.path.abspath(output_dir)
    while not os.path.exists(ancestor):
      ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
      raise UserError(describe(output_dir, f'cannot be created: {ancestor} is not a directory'))
    if not os.access(ancestor, os.W_OK | os.X_OK):
      raise UserError(describe(output_dir, f'cannot be created: {ancestor} is not writable'))


def _replace_outputs(staging, output_dir, split_names):
  """Moves the staged splits into output_dir, first removing our earlier outputs there."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for entry in tf.io.gfile.listdir(output_dir):
    entry = entry.rstrip('/')
    path = os.path.join(output_dir, entry)
    if entry.startswith(_SPLIT_PREFIX) and tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    elif entry == MANIFEST_NAME:
      tf.io.gfile.remove(path)
  for name in split_names:
    tf.io.gfile.rename(os.path.join(staging, _SPLIT_PREFIX + name),
                       os.path.join(output_dir, _SPLIT_PREFIX + name))


def import_codes(input_dir, output_dir, splits, overwrite=False, progress=None):
  """The command's work, callable from Python: -> the manifest dict it wrote."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfx.components.example_gen import write_split  # pylint: disable=g-import-not-at-top

  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.components import index_splits  # pylint: disable=g-import-not-at-top
  from entropy_coder.components import npz_code_import  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import splits as splits_lib  # pylint: disable=g-import-not-at-top

  splits = index_splits.check_splits(splits, '--splits')
  _check_output_dir(output_dir, input_dir, overwrite)
  staging = os.path.join(output_dir, _STAGING_NAME)

  pipeline = beam.Pipeline(options=PipelineOptions(
      ['--runner=DirectRunner', '--direct_running_mode=in_memory']))
  source = npz_code_import.ImportNpzCodes(input_dir, splits, progress)
  examples = pipeline | 'ImportNpzCodes' >> source  # checks every file, raises UserError
  for name, split in examples.items():
    _ = split | f'WriteSplit[{name}]' >> write_split.WriteSplit(
        os.path.join(staging, _SPLIT_PREFIX + name), None)

  code_set = source.code_set
  counts = splits_lib.split_counts(len(code_set.paths), splits)
  if progress:
    print(f'writing {len(code_set.paths)} examples to {output_dir}', file=sys.stderr, flush=True)
  if tf.io.gfile.exists(staging):
    tf.io.gfile.rmtree(staging)
  tf.io.gfile.makedirs(staging)
  try:
    pipeline.run().wait_until_finish()
    _replace_outputs(staging, output_dir, [name for name, _ in splits])
  finally:
    tf.io.gfile.rmtree(staging)

  manifest = {
      'format': MANIFEST_FORMAT,
      'version': MANIFEST_VERSION,
      'example_format_version': codes_format.EXAMPLE_FORMAT_VERSION,
      'features': [codes_format.FEATURE_CODE, codes_format.FEATURE_SHAPE,
                   codes_format.FEATURE_SAMPLE_INDEX],
      'compression': 'GZIP',
      'source': {'kind': 'npz', 'input_dir': os.path.abspath(input_dir),
                 'num_files': len(code_set.paths)},
      'layer_depth': code_set.layer_depth,
      'code_depth': code_set.depth,
      'code_shapes': [list(shape) for shape in code_set.shapes],
      'splits': {name: {'weight': weight, 'num_examples': counts[name],
                        'files': f'{_SPLIT_PREFIX}{name}/*.gz'}
                 for name, weight in splits},
  }
  with tf.io.gfile.GFile(os.path.join(output_dir, MANIFEST_NAME), 'w') as f:
    f.write(json.dumps(manifest, indent=2) + '\n')
  return manifest


def run(args):
  manifest = import_codes(args.input_dir, args.output_dir, args.splits, args.overwrite,
                          progress=_print_progress)
  counts = ', '.join(f'{name} {split["num_examples"]}' for name, split in manifest['splits'].items())
  print(f'imported {manifest["source"]["num_files"]} codes (layer_depth '
        f'{manifest["layer_depth"]}, depth {manifest["code_depth"]}) into {args.output_dir}: '
        f'{counts}')
  return 0
