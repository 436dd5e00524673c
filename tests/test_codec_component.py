"""RealCompressionCheck: real bytes from an Examples split, its report, and its push blessing."""
import json
import os

import numpy as np
import pytest

from helpers import reference_model
from entropy_coder import model_files
from entropy_coder import push_gates
from entropy_coder.data_gen import example_wire, synthetic, tfrecord_files



def _examples_dir(root, eval_codes):
  """An Examples artifact directory: Split-train/ and Split-eval/ GZIP TFRecords of our layout."""
  for split, codes in (('train', eval_codes[:1]), ('eval', eval_codes)):
    os.makedirs(os.path.join(root, f'Split-{split}'))
    tfrecord_files.write_gzip_tfrecords(os.path.join(root, f'Split-{split}', 'data_tfrecord-00000-of-00001.gz'),
                                        [example_wire.encode_example(c) for c in codes])
  return root


def _trainer_model_dir(root):
  """A Trainer Model artifact: our model files under Format-Serving/."""
  reference_model(os.path.join(root, 'Format-Serving'))
  return root


@pytest.fixture(scope='module')
def artifacts(tmp_path_factory):
  root = tmp_path_factory.mktemp('artifacts')
  codes = list(synthetic.generate_codes(seed=21, indices_or_start=0, count=12, shape=(16, 16, 8)))
  return (_examples_dir(str(root / 'examples'), codes), _trainer_model_dir(str(root / 'model')), codes)


def test_report_holds_real_size_theory_and_baselines(artifacts, tmp_path):
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  examples_uri, model_uri, codes = artifacts
  report = real_compression.check_real_compression(examples_uri, model_uri, str(tmp_path))
  assert json.loads((tmp_path / real_compression.REPORT_FILE).read_text()) == report
  assert report['round_trip_ok'] is True and report['sample_count'] == len(codes)
  assert report['code_bits'] == sum(c.size for c in codes)
  # The payload is the coders' ideal plus their overhead; the ideal is the mixed stream's
  # (format version 4), which here learns enough to be below the model's own figure.
  assert report['coded_ideal_bits_per_bit'] < report['real_payload_bits_per_bit'] < report['real_bits_per_bit']
  assert report['real_payload_bits_per_bit'] <= report['coded_ideal_bits_per_bit'] * 1.005 + 64 * 12 / report['code_bits']
  assert report['real_payload_bits_per_bit'] <= report['theoretical_bits_per_bit'] * 1.005 + 64 * 12 / report['code_bits']
  # The neural coder beats the classical ones on this source.
  assert report['real_bits_per_bit'] < min(report['zstd19_bits_per_bit'], report['xz9_bits_per_bit'])
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  stored = (tmp_path / real_compression.COMPRESSED_FILE).read_bytes()
  files = model_files.read_model_files(model_uri)
  assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(stored, files), codes))
  limited = real_compression.check_real_compression(examples_uri, model_uri, str(tmp_path / 'few'),
                                                    max_samples=3)
  assert limited['sample_count'] == 3


def test_report_blesses_an_exact_round_trip_within_the_tolerance(artifacts, tmp_path):
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  examples_uri, model_uri, _ = artifacts
  report = real_compression.check_real_compression(examples_uri, model_uri, str(tmp_path))
  assert report['max_real_over_theory'] == push_gates.DEFAULT_MAX_REAL_OVER_THEORY
  assert 0 < report['payload_over_theory'] < push_gates.DEFAULT_MAX_REAL_OVER_THEORY
  assert report['payload_over_theory'] == pytest.approx(
      report['real_payload_bits_per_bit'] / report['coded_ideal_bits_per_bit'] - 1)
  assert report['blessed'] is True and report['reason'] == ''


def test_a_payload_over_the_tolerance_is_not_blessed(artifacts, tmp_path):
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  examples_uri, model_uri, _ = artifacts
  report = real_compression.check_real_compression(examples_uri, model_uri, str(tmp_path),
                                                   max_real_over_theory=0.0)
  assert report['round_trip_ok'] is True  # exact, but a coder's bytes never meet the ideal
  assert report['blessed'] is False
  assert report['reason'].startswith('real payload ')
  assert 'max_real_over_theory 0 allows' in report['reason']


def test_a_wrong_round_trip_is_not_blessed_and_does_not_raise(artifacts, tmp_path, monkeypatch):
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  examples_uri, model_uri, _ = artifacts
  real_decompress = codec.decompress

  def corrupting_decompress(*args, **kwargs):
    restored = real_decompress(*args, **kwargs)
    restored[-1] = restored[-1].copy()
    restored[-1][0, 0, 0] ^= 1
    return restored

  monkeypatch.setattr(codec, 'decompress', corrupting_decompress)
  report = real_compression.check_real_compression(examples_uri, model_uri, str(tmp_path))
  assert report['round_trip_ok'] is False and report['blessed'] is False
  assert report['reason'] == 'round trip FAILED: 1 of 12 decoded eval codes differ from the input'
  assert json.loads((tmp_path / real_compression.REPORT_FILE).read_text()) == report

  def raising_decompress(*args, **kwargs):
    raise ValueError('payload CRC mismatch\nmore detail')

  monkeypatch.setattr(codec, 'decompress', raising_decompress)
  report = real_compression.check_real_compression(examples_uri, model_uri, str(tmp_path / 'r'))
  assert report['blessed'] is False and report['round_trip_ok'] is False
  assert report['reason'] == 'round trip FAILED: decompress raised ValueError: payload CRC mismatch'


@pytest.mark.e2e
def test_component_runs_in_a_tfx_pipeline_and_records_its_numbers(artifacts, tmp_path):
  """A real LocalDagRunner run with a sqlite ML-Metadata store: importers -> RealCompressionCheck."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  from entropy_coder.components.real_compression import RealCompressionCheck  # pylint: disable=g-import-not-at-top
  examples_uri, model_uri, codes = artifacts
  examples = tfx.dsl.Importer(source_uri=examples_uri, artifact_type=standard_artifacts.Examples,
                              properties={'split_names': '["train", "eval"]'}).with_id('examples')
  model = tfx.dsl.Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model).with_id('model')
  check = RealCompressionCheck(examples=examples.outputs['result'], model=model.outputs['result'])
  metadata_path = str(tmp_path / 'metadata.sqlite')
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='real_compression_test', pipeline_root=str(tmp_path / 'root'),
      components=[examples, model, check], enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
  tfx.orchestration.LocalDagRunner().run(pipeline)

  store = metadata_store.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
  types = {t.id: t.name for t in store.get_execution_types()}
  runs = [e for e in store.get_executions() if types[e.type_id].endswith('.RealCompressionCheck')]
  assert len(runs) == 1
  outputs = {event.path.steps[0].key: event.artifact_id
             for event in store.get_events_by_execution_ids([runs[0].id])
             if event.type == event.OUTPUT}
  assert set(outputs) == {'compression', 'blessing'}
  by_id = {a.id: a for a in store.get_artifacts_by_id(list(outputs.values()))}
  artifact, blessing = by_id[outputs['compression']], by_id[outputs['blessing']]
  # The InfraBlessing the Pusher reads (tfx model_utils.is_infra_validated: blessed == 1).
  assert blessing.custom_properties['blessed'].int_value == 1
  assert os.path.exists(os.path.join(blessing.uri, real_compression.BLESSED_FILE))
  properties = {name: value.int_value or value.double_value
                for name, value in artifact.custom_properties.items()}
  assert properties['round_trip_ok'] == 1 and properties['sample_count'] == len(codes)
  report = json.loads(open(os.path.join(artifact.uri, 'real_compression.json')).read())
  assert report['real_bits_per_bit'] == pytest.approx(properties['real_bits_per_bit'])
  assert report['round_trip_ok'] is True


@pytest.mark.e2e
def test_a_failed_check_execution_is_shown_not_hidden(artifacts, tmp_path, monkeypatch):
  """If the check itself breaks (an unreadable input, say), ML-Metadata records a FAILED
  execution; the metrics reader reports it as 'not blessed' instead of skipping it."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from entropy_coder.commands import metrics as metrics_command  # pylint: disable=g-import-not-at-top
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  from entropy_coder.pipeline import inspect_runs  # pylint: disable=g-import-not-at-top
  examples_uri, model_uri, _ = artifacts

  def broken(*args, **kwargs):
    raise OSError('examples unreadable')

  monkeypatch.setattr(real_compression, 'check_real_compression', broken)
  examples = tfx.dsl.Importer(source_uri=examples_uri, artifact_type=standard_artifacts.Examples,
                              properties={'split_names': '["train", "eval"]'}).with_id('examples')
  model = tfx.dsl.Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model).with_id('model')
  check = real_compression.RealCompressionCheck(examples=examples.outputs['result'],
                                                model=model.outputs['result'])
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='real_compression_failure', pipeline_root=str(tmp_path / 'root'),
      components=[examples, model, check], enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(tmp_path / 'metadata.sqlite')))
  with pytest.raises(OSError, match='examples unreadable'):
    tfx.orchestration.LocalDagRunner().run(pipeline)

  store = inspect_runs.open_store(str(tmp_path))
  [model_artifact] = store.get_artifacts_by_type(standard_artifacts.Model.TYPE_NAME)
  found = inspect_runs._real_compression(store, model_artifact)  # pylint: disable=protected-access
  assert found['state'] == 'FAILED' and found['blessed'] is False
  assert 'FAILED' in found['reason']
  assert metrics_command.format_round_trip(found).startswith('NOT BLESSED: the RealCompressionCheck execution')
  assert metrics_command.format_real_compression(found).startswith('real bitstream check FAILED')
