"""ImageCodeImport: a directory of pictures, coded by the image encoder, as an Examples artifact.

The pipeline's source of real neural codes: every picture of the input directory is coded by
a trained image encoder (entropy_coder.image_encoder) into its binary code, in a Beam ParDo
(each worker loads the encoder once), and written as our tf.Example layout. The same rules as
NpzCodeImport (components/npz_code_import.py), whose splitting it shares:

* the inputs are the pictures directly in the input directory (image_encoder.files:
  IMAGE_SUFFIXES), sorted by name; picture `i` goes to split `split_of(i, splits)` and its
  example carries `sample_index` = i;
* every split must receive at least one picture;
* the encoder directory and every picture are read and checked when the transform is applied,
  BEFORE the Beam pipeline writes anything: a bad picture stops the run with a one-line
  UserError naming it;
* codes have the encoder's depth (iterations x bits) and H/16 x W/16 positions of each picture
  (padded by edge replication), so pictures of different sizes give codes of different shapes.

The encoder travels in the component's `custom_config` (its directory and a fingerprint of its
files), so TFX's cache re-runs the import when the encoder changes, not only the pictures.
"""
import hashlib
import os

import apache_beam as beam
from absl import logging
from google.protobuf import any_pb2
from google.protobuf import json_format
from google.protobuf import struct_pb2
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from entropy_coder.components import index_splits
from entropy_coder.components import npz_code_import
from entropy_coder.data_gen import example_wire
from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.image_encoder import config as encoder_config
from entropy_coder.image_encoder import files as image_files

# The input split's pattern: TFX fingerprints every file of the directory; the executor codes
# the pictures among them.
IMAGE_PATTERN = '*'
_PROGRESS_EVERY = 100

def encoder_fingerprint(encoder_dir):
  """SHA-256 of the encoder's encoder.json config and newest checkpoint files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  document = encoder_config.read_encoder_json(encoder_dir)
  digest = hashlib.sha256(repr(document['config']).encode())
  latest = tf.train.latest_checkpoint(encoder_config.checkpoint_dir(encoder_dir))
  for path in sorted(tf.io.gfile.glob(latest + '*')) if latest else ():
    digest.update(os.path.basename(path).encode())
    with tf.io.gfile.GFile(path, 'rb') as f:
      digest.update(f.read())
  return digest.hexdigest()


def check_pictures(paths, encoder, progress=None):
  """Reads every picture once; -> npz_code_import.CodeSet, or a UserError naming the first bad
  one."""
  config = encoder.config
  step = encoder_config.DOWNSAMPLING
  shapes = set()
  for done, path in enumerate(paths, 1):
    height, width = image_files.read_gray(path).shape
    shapes.add((-(-height // step), -(-width // step), config.code_depth))
    if progress and (done % _PROGRESS_EVERY == 0 or done == len(paths)):
      progress(done, len(paths))
  return npz_code_import.CodeSet(tuple(paths), config.bits_per_iteration, config.code_depth,
                                 tuple(sorted(shapes)))


class _EncodePictures(beam.DoFn):
  """(picture index, path) -> serialized tf.Example of its code; the encoder loaded once."""

  def __init__(self, encoder_dir):
    super().__init__()
    self._encoder_dir = encoder_dir
    self._encoder = None

  def setup(self):
    from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
    self._encoder = api.load_encoder(self._encoder_dir)

  def process(self, indexed_path):
    from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
    index, path = indexed_path
    code = api.encode_image(image_files.read_gray(path), self._encoder)
    yield example_wire.encode_example(code, sample_index=index)


class ImportImageCodes(npz_code_import.ImportCodes):
  """ImportCodes of a directory's pictures, coded by the image encoder of `encoder_dir`, which
  is checked first."""

  WHAT = 'Pictures'

  def __init__(self, input_dir, encoder_dir, splits=splits_lib.DEFAULT_SPLITS, progress=None):
    super().__init__(input_dir, splits, progress)
    self._encoder_dir = encoder_dir
    self._encoder = None

  def _list(self):
    from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
    self._encoder = api.load_encoder(self._encoder_dir)
    return image_files.images_in_dir(self._input_dir)

  def _check(self, paths):
    return check_pictures(paths, self._encoder, self._progress)

  def _to_record(self):
    return beam.ParDo(_EncodePictures(self._encoder_dir))


def custom_config(encoder_dir):
  """The component's custom_config: {'encoder_dir', 'encoder_fingerprint'} in a Struct."""
  struct = struct_pb2.Struct()
  struct.update({'encoder_dir': encoder_dir,
                 'encoder_fingerprint': encoder_fingerprint(encoder_dir)})
  packed = any_pb2.Any()
  packed.Pack(struct)
  return example_gen_pb2.CustomConfig(custom_config=packed)


def encoder_dir_of(exec_properties):
  """The encoder directory recorded in the exec properties' custom_config."""
  config = example_gen_pb2.CustomConfig()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
  struct = struct_pb2.Struct()
  config.custom_config.Unpack(struct)
  return json_format.MessageToDict(struct)['encoder_dir']


def _log_progress(done, total):
  logging.info('ImageCodeImport: checked %d/%d pictures', done, total)


class Executor(npz_code_import.Executor):
  """Checks the encoder and the pictures, then codes them in the component's Beam pipeline;
  records `layer_depth`, `code_depth` and `num_files` on the artifact as NpzCodeImport does."""

  COMPONENT = 'ImageCodeImport'
  PATTERN = IMAGE_PATTERN

  def _make_import(self, exec_properties, splits):
    return ImportImageCodes(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                            encoder_dir_of(exec_properties), splits, _log_progress)


class ImageCodeImport(example_gen_component.FileBasedExampleGen):
  """Codes the pictures of `input_dir` with the image encoder of `encoder_dir` into an Examples
  artifact (splits by picture index; default train 9 : eval 1), with the custom properties
  `layer_depth` (bits per iteration), `code_depth` and `num_files`.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_dir, encoder_dir, splits=splits_lib.DEFAULT_SPLITS):
    super().__init__(
        input_base=input_dir,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name='images', pattern=IMAGE_PATTERN)]),
        output_config=index_splits.output_config(splits),
        custom_config=custom_config(encoder_dir))
