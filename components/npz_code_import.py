"""NpzCodeImport: the user's own `.npz` codes (the original's format) as an Examples artifact.

One conversion, two fronts: the `NpzCodeImport` component (a `FileBasedExampleGen`, so TFX
fingerprints the input files and re-runs only when they change) and the standalone Beam job
of `entropy-coder import-codes` (data_gen/npz_import.py) both apply the `ImportNpzCodes`
transform.

The rules, the same in both fronts:

* the inputs are the `*.npz` files directly in the input directory, sorted by name; file `i`
  goes to split `split_of(i, splits)` and its example carries `sample_index` = i, as the
  generator's examples do;
* every split must receive at least one file (an empty eval split would fail much later);
* every file is read and checked (entropy_coder.codes_format.read_npz: keys, shape product,
  binary values, no pickles) BEFORE the Beam pipeline writes anything, so a bad file stops
  the run with a one-line UserError naming it and nothing is half-written;
* all files must share one layer_depth and one code depth D (the model's channel layout
  depends on both); H and W may differ, the model is fully convolutional.
"""
import collections
import os

import apache_beam as beam
from absl import logging
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from entropy_coder import codes_format
from entropy_coder.components import index_splits
from entropy_coder.data_gen import example_wire
from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.errors import UserError, describe

NPZ_PATTERN = '*.npz'
# A progress line every this many checked files (the CLI prints it, the component logs it).
_PROGRESS_EVERY = 500

# What the check of an import's directory found (NpzCodeImport's .npz files, ImageCodeImport's
# pictures): the files in order and the layout their codes share.
CodeSet = collections.namedtuple('CodeSet', ['paths', 'layer_depth', 'depth', 'shapes'])


def list_npz_files(input_dir):
  """The `*.npz` files directly in `input_dir`, sorted by name. UserError if there are none."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.isdir(input_dir):
    problem = 'is not a directory' if tf.io.gfile.exists(input_dir) else 'no such directory'
    raise UserError(describe(input_dir, problem))
  paths = sorted(tf.io.gfile.glob(os.path.join(input_dir, NPZ_PATTERN)))
  if not paths:
    raise UserError(describe(input_dir, f'holds no {NPZ_PATTERN} files'))
  return paths


def check_npz_files(paths, progress=None):
  """Reads every file once; -> CodeSet, or UserError naming the first bad file.

  `progress(done, total)` is called every few hundred files and at the end.
  """
  layer_depth = depth = first = None
  shapes = set()
  for done, path in enumerate(paths, 1):
    bits, file_layer_depth = codes_format.read_npz(path)
    if first is None:
      first, layer_depth, depth = path, file_layer_depth, bits.shape[2]
    elif (file_layer_depth, bits.shape[2]) != (layer_depth, depth):
      raise UserError(describe(
          path, f'layer_depth {file_layer_depth} and code depth {bits.shape[2]} differ from '
          f'layer_depth {layer_depth} and code depth {depth} of {os.path.basename(first)}; '
          'all codes of one dataset must share them'))
    shapes.add(bits.shape)
    if progress and (done % _PROGRESS_EVERY == 0 or done == len(paths)):
      progress(done, len(paths))
  return CodeSet(tuple(paths), layer_depth, depth, tuple(sorted(shapes)))


def _encode_file(indexed_path):
  """(file index, .npz path) -> serialized tf.Example, our layout plus `sample_index`."""
  index, path = indexed_path
  bits, _ = codes_format.read_npz(path)
  return example_wire.encode_example(bits, sample_index=index)


class ImportCodes(beam.PTransform):
  """PBegin -> {split name: PCollection of serialized tf.Examples} for a directory of inputs,
  file i into split_of(i): what ImportNpzCodes and ImportImageCodes share.

  The directory is listed and every input checked when the transform is applied (pipeline
  construction), i.e. before anything runs or is written. The check's result is kept in
  `self.code_set` (a CodeSet) for callers that record it (manifest, artifact properties).
  A subclass gives `_list()` (the inputs, in order), `_check(paths)` (-> CodeSet), `_to_record()`
  (a Beam transform of one (index, path) pair to one record) and `WHAT` (its Beam labels).
  """

  WHAT = 'Files'

  def __init__(self, input_dir, splits=splits_lib.DEFAULT_SPLITS, progress=None):
    super().__init__()
    self._input_dir = input_dir
    self._splits = index_splits.check_splits(splits)
    self._progress = progress
    self.code_set = None

  def expand(self, pbegin):
    paths = self._list()
    index_splits.check_no_empty_split(len(paths), self._splits, self._input_dir)
    self.code_set = self._check(paths)
    files_by_split = index_splits.files_by_split(self.code_set.paths, self._splits)
    return {
        name: (pbegin
               | f'{self.WHAT}[{name}]' >> beam.Create(files_by_split[name])
               | f'Encode[{name}]' >> self._to_record())
        for name in files_by_split
    }


class ImportNpzCodes(ImportCodes):
  """ImportCodes of a directory's `*.npz` codes (the original's format)."""

  def _list(self):
    return list_npz_files(self._input_dir)

  def _check(self, paths):
    return check_npz_files(paths, self._progress)

  def _to_record(self):
    return beam.Map(_encode_file)


def _log_progress(done, total):
  logging.info('NpzCodeImport: checked %d/%d files', done, total)


class Executor(index_splits.IndexSplitExecutor):
  """Checks the input directory, then converts it in the component's Beam pipeline; records
  the codes' layout on the artifact. A subclass (ImageCodeImport's) names its own input
  `PATTERN` and builds its own import transform (`_make_import`)."""

  COMPONENT = 'NpzCodeImport'
  PATTERN = NPZ_PATTERN

  def _make_import(self, exec_properties, splits):
    return ImportNpzCodes(exec_properties[standard_component_specs.INPUT_BASE_KEY], splits,
                          _log_progress)

  def GetInputSourceToExamplePTransform(self):
    def source(exec_properties, pattern, splits):
      if pattern != self.PATTERN:
        raise ValueError(f'{self.COMPONENT} reads {self.PATTERN!r}, got pattern {pattern!r}')
      self._import = self._make_import(exec_properties, splits)  # its code_set: for Do
      return self._import
    return source

  def Do(self, input_dict, output_dict, exec_properties):
    super().Do(input_dict, output_dict, exec_properties)
    # What the Trainer's model_config must match, readable from ML-Metadata.
    code_set = self._import.code_set
    for artifact in output_dict[standard_component_specs.EXAMPLES_KEY]:
      artifact.set_int_custom_property('layer_depth', code_set.layer_depth)
      artifact.set_int_custom_property('code_depth', code_set.depth)
      artifact.set_int_custom_property('num_files', len(code_set.paths))


class NpzCodeImport(example_gen_component.FileBasedExampleGen):
  """Imports the `*.npz` codes of `input_dir` as an Examples artifact (splits by file index).

  Output `examples`: standard `Examples` with `splits` (default train 9 : eval 1), plus the
  custom properties `layer_depth`, `code_depth` and `num_files`.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_dir, splits=splits_lib.DEFAULT_SPLITS):
    super().__init__(
        input_base=input_dir,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name='npz', pattern=NPZ_PATTERN)]),
        output_config=index_splits.output_config(splits))
