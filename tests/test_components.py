"""SyntheticCodeGen and NpzCodeImport in real TFX pipelines (LocalDagRunner, sqlite ML-Metadata).

Everything is read back through ML-Metadata: the Examples artifacts' URIs and split names, the
executions' states (a second run with the same parameters must be CACHED), and the records in
each split, compared with what the generator / the source .npz files hold.
"""
import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.types import artifact_utils

from entropy_coder.components import NpzCodeImport, SyntheticCodeGen
from entropy_coder.components import index_splits
from entropy_coder.components import synthetic_code_gen
from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError

from test_import_codes import _bad_kinds, assert_same_codes, expected_splits, read_split
from test_import_codes import write_codes

PIPELINE_NAME = 'components-test'
SHAPE = (5, 6, 4)
COUNT = 23  # train: 21, eval: indices 9 and 19
SEED = 7
NPZ_SPLITS = (('train', 2), ('eval', 1))


def _run(tmp_path, components):
  pipeline = tfx.dsl.Pipeline(
      pipeline_name=PIPELINE_NAME,
      pipeline_root=str(tmp_path / 'root'),
      components=components,
      enable_cache=True,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(tmp_path / 'metadata.sqlite')),
      beam_pipeline_args=['--direct_running_mode=in_memory', '--direct_num_workers=1'])
  tfx.orchestration.LocalDagRunner().run(pipeline)


def _store(tmp_path):
  return metadata.Metadata(metadata.sqlite_metadata_connection_config(
      str(tmp_path / 'metadata.sqlite')))


def _executions(m, component_id):
  """The component's executions in ML-Metadata, oldest first."""
  context = m.store.get_context_by_type_and_name('node', f'{PIPELINE_NAME}.{component_id}')
  assert context is not None, f'no node context for {component_id}'
  return sorted(m.store.get_executions_by_context(context.id), key=lambda e: e.id)


def _output_examples(m, execution):
  """The Examples artifact an execution output (or, when cached, re-published)."""
  events = m.store.get_events_by_execution_ids([execution.id])
  ids = [e.artifact_id for e in events if e.type == e.OUTPUT]
  artifacts = m.store.get_artifacts_by_id(ids)
  assert len(artifacts) == 1
  examples = tfx.types.standard_artifacts.Examples()
  examples.set_mlmd_artifact(artifacts[0])
  return examples


def _read_splits(examples):
  """{split name: {sample_index: code}} of an Examples artifact, read as the Trainer does."""
  return {name: read_split(os.path.join(artifact_utils.get_split_uri([examples], name), '*'))
          for name in artifact_utils.decode_split_names(examples.split_names)}


def _states(runs):
  """The names of executions' states: 'COMPLETE', 'CACHED', 'FAILED', ..."""
  return [metadata_store_pb2.Execution.State.Name(run.last_known_state) for run in runs]


def assert_imported(examples, expected, layer_depth, code_depth, num_files):
  """An import component's Examples artifact (NpzCodeImport, ImageCodeImport): splits train and
  eval holding exactly `expected` ({split: {index: code}}), and the custom properties the
  Trainer and the Evaluator read. -> the splits read back."""
  splits = _read_splits(examples)
  assert list(splits) == ['train', 'eval']
  for name in splits:
    assert_same_codes(splits[name], expected[name])
  assert examples.get_int_custom_property('layer_depth') == layer_depth
  assert examples.get_int_custom_property('code_depth') == code_depth
  assert examples.get_int_custom_property('num_files') == num_files
  return splits


@pytest.mark.e2e
def test_both_components_in_a_pipeline_with_cache(tmp_path):
  npz_dir = tmp_path / 'npz'
  npz_codes = write_codes(npz_dir, [(3, 4, 4)] * 4 + [(6, 2, 4)] * 3, layer_depth=2)

  def components():
    return [SyntheticCodeGen(count=COUNT, shape=SHAPE, seed=SEED),
            NpzCodeImport(input_dir=str(npz_dir), splits=NPZ_SPLITS)]

  _run(tmp_path, components())
  _run(tmp_path, components())

  with _store(tmp_path) as m:
    # Synthetic: split names, counts exactly as split_of says, records = generate_codes.
    runs = _executions(m, 'SyntheticCodeGen')
    assert _states(runs) == ['COMPLETE', 'CACHED']
    first, second = (_output_examples(m, e) for e in runs)
    assert first.uri == second.uri  # the cached run re-publishes the first output
    splits = _read_splits(first)
    assert list(splits) == ['train', 'eval']
    for name, codes in splits.items():
      indices = [i for i in range(COUNT) if splits_lib.split_of(i) == name]
      generated = synthetic.generate_codes(SEED, indices, shape=SHAPE)
      assert_same_codes(codes, dict(zip(indices, generated)))
    assert (len(splits['train']), len(splits['eval'])) == (21, 2)
    assert all(os.path.basename(f).endswith('.gz') for f in tf.io.gfile.glob(
        os.path.join(first.uri, 'Split-train', '*')))

    # Import: the same splits by sorted file index, records = the source files.
    runs = _executions(m, 'NpzCodeImport')
    assert _states(runs) == ['COMPLETE', 'CACHED']
    splits = assert_imported(_output_examples(m, runs[0]), expected_splits(npz_codes, NPZ_SPLITS),
                             layer_depth=2, code_depth=4, num_files=7)
    assert (len(splits['train']), len(splits['eval'])) == (5, 2)

  # A changed input directory is noticed (file fingerprint), the generator stays cached.
  extra = write_codes(tmp_path / 'more', [(2, 2, 4)], layer_depth=2, seed=3)
  os.replace(tmp_path / 'more' / 'code_000.npz', npz_dir / 'code_999.npz')
  _run(tmp_path, components())
  with _store(tmp_path) as m:
    assert _states(_executions(m, 'SyntheticCodeGen'))[-1] == 'CACHED'
    runs = _executions(m, 'NpzCodeImport')
    assert _states(runs) == ['COMPLETE', 'CACHED', 'COMPLETE']
    splits = _read_splits(_output_examples(m, runs[-1]))
    npz_codes['code_999.npz'] = extra['code_000.npz']
    expected = expected_splits(npz_codes, NPZ_SPLITS)
    for name in ('train', 'eval'):
      assert_same_codes(splits[name], expected[name])


@pytest.mark.e2e
def test_bad_npz_fails_the_component_and_writes_nothing(tmp_path):
  npz_dir = tmp_path / 'npz'
  write_codes(npz_dir, [(3, 4, 2)] * 3)
  bad_name = _bad_kinds(tmp_path)['shape product']
  os.replace(tmp_path / bad_name, npz_dir / 'code_001x.npz')

  with pytest.raises(UserError) as error:
    _run(tmp_path, [NpzCodeImport(input_dir=str(npz_dir), splits=NPZ_SPLITS)])
  assert str(error.value).startswith(str(npz_dir / 'code_001x.npz') + ': ')

  with _store(tmp_path) as m:
    assert _states(_executions(m, 'NpzCodeImport')) == ['FAILED']
    assert all(a.state != a.LIVE for a in m.store.get_artifacts_by_type('Examples'))
  written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / 'root') for f in files]
  assert not [path for path in written if 'Split-' in path], written


def test_component_parameters_are_checked_when_built():
  with pytest.raises(UserError, match='count'):
    SyntheticCodeGen(count=0)
  with pytest.raises(UserError, match='seed'):
    SyntheticCodeGen(count=3, seed=-1)
  with pytest.raises(UserError):
    SyntheticCodeGen(count=3, shape=(4, 4))
  with pytest.raises(UserError, match='split eval empty'):
    SyntheticCodeGen(count=3, splits='train:3,eval:2')
  with pytest.raises(UserError, match='eval'):
    NpzCodeImport(input_dir='/nowhere', splits=(('train', 1), ('test', 1)))


def test_output_config_carries_split_weights_for_trainer_and_evaluator():
  component = SyntheticCodeGen(count=5, splits='train:3,eval:2')
  # What the executor reads back from the component's exec_properties (JSON protos).
  query, splits = index_splits.read_exec_properties(component.exec_properties)
  # Split names the Trainer (train_args: 'train') and the Evaluator ('eval') read by default.
  assert splits == (('train', 3), ('eval', 2))
  assert synthetic_code_gen.parse_query(query) == (5, synthetic.DATASET_SHAPE, 0)
