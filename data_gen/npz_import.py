"""A directory of `.npz` codes -> train/eval TFRecord splits + `manifest.json`, from one Beam run.

The standalone twin of the pipeline's NpzCodeImport component, as data_gen/dataset_writer.py is
of SyntheticCodeGen: both apply `entropy_coder.components.npz_code_import.ImportNpzCodes`, so
the same files land in the same splits. It writes `Split-<name>/data_tfrecord-*.gz` (GZIP
TFRecords of our tf.Example layout, the layout an Examples artifact has) and a `manifest.json`
saying what was imported. `entropy-coder import-codes` is its command-line front.

Nothing is half-written: every input file is checked before the Beam run starts, the splits are
written into a staging folder and moved into place only after the run succeeded, and the
manifest is written last.
"""
import json
import os
import sys

from entropy_coder import uris
from entropy_coder.codes_format import MANIFEST_NAME
from entropy_coder.data_gen.splits import SPLIT_DIR_PREFIX, split_dir

MANIFEST_FORMAT = 'entropy-coder-imported-codes'
MANIFEST_VERSION = 1
_STAGING_NAME = '.import-codes.staging'


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
  if not uris.is_url(output_dir):  # a local path: its nearest existing ancestor must take a folder
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
    if entry.startswith(SPLIT_DIR_PREFIX) and tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    elif entry == MANIFEST_NAME:
      tf.io.gfile.remove(path)
  for name in split_names:
    tf.io.gfile.rename(split_dir(staging, name), split_dir(output_dir, name))


def import_codes(input_dir, output_dir, splits, overwrite=False, progress=None):
  """Imports the `*.npz` codes of `input_dir` into `output_dir`: -> the manifest dict it wrote.

  `splits` as 'train:9,eval:1' or ((name, weight), ...); `progress(done, total)` is called while
  the files are checked.
  """
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
        split_dir(staging, name), None)

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
      'features': list(codes_format.MANIFEST_FEATURES),
      'compression': 'GZIP',
      'source': {'kind': 'npz', 'input_dir': os.path.abspath(input_dir),
                 'num_files': len(code_set.paths)},
      'layer_depth': code_set.layer_depth,
      'code_depth': code_set.depth,
      'code_shapes': [list(shape) for shape in code_set.shapes],
      'splits': {name: {'weight': weight, 'num_examples': counts[name],
                        'files': f'{SPLIT_DIR_PREFIX}{name}/*.gz'}
                 for name, weight in splits},
  }
  with tf.io.gfile.GFile(os.path.join(output_dir, MANIFEST_NAME), 'w') as f:
    f.write(json.dumps(manifest, indent=2) + '\n')
  return manifest
