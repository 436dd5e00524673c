"""BaselinePicker (the Kubeflow build's baseline: the newest pushed model) and the Evaluator
executor that treats its "no baseline" artifact as no baseline at all."""
import os

from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts

from entropy_coder.components import baseline_picker


def _push(serving_dir, version, files=('saved_model.pb', 'weights.npz')):
  path = serving_dir / str(version)
  (path / 'variables').mkdir(parents=True)
  for name in files:
    (path / name).write_text(f'{version} {name}')
  (path / 'variables' / 'variables.index').write_text(str(version))
  return str(path)


def test_nothing_pushed_is_no_baseline(tmp_path):
  path, description = baseline_picker.newest_pushed_model(str(tmp_path / 'serving_model'))
  assert path is None and description.startswith('no baseline: ')
  assert 'does not exist' in description
  (tmp_path / 'serving_model').mkdir()
  (tmp_path / 'serving_model' / 'notes').mkdir()
  path, description = baseline_picker.newest_pushed_model(str(tmp_path / 'serving_model'))
  assert path is None and 'no pushed model version' in description


def test_the_newest_complete_version_is_picked_and_copied(tmp_path):
  serving = tmp_path / 'serving_model'
  _push(serving, 1700000000)
  newest = _push(serving, 1800000000)
  _push(serving, 900000000)  # older, and numerically sorted (not by name)
  (serving / '1900000000').mkdir()  # a push in progress: no saved_model.pb yet
  (serving / 'tmp-2000000000').mkdir()  # not a version folder
  path, description = baseline_picker.newest_pushed_model(str(serving))
  assert path == newest and description == f'baseline: the newest pushed model {newest}'

  out = tmp_path / 'out'
  version, _ = baseline_picker.pick_baseline(str(serving), str(out))
  assert version == '1800000000'
  copied = out / baseline_picker.SERVING_SUBDIR
  assert (copied / 'saved_model.pb').read_text() == '1800000000 saved_model.pb'
  assert (copied / 'variables' / 'variables.index').read_text() == '1800000000'


def test_the_component_sets_has_baseline(tmp_path):
  serving = tmp_path / 'serving_model'
  for expected in (0, 1):
    if expected:
      _push(serving, 1800000000)
    artifact = standard_artifacts.Model()
    artifact.uri = str(tmp_path / f'baseline{expected}')
    # The @component's function, as its executor calls it.
    function = baseline_picker.BaselinePicker.EXECUTOR_SPEC.executor_class._FUNCTION  # pylint: disable=protected-access
    function(baseline=artifact, serving_model_dir=str(serving))
    assert artifact.get_int_custom_property(baseline_picker.HAS_BASELINE) == expected
    assert baseline_picker.has_baseline(artifact) == bool(expected)
    assert artifact.get_string_custom_property(baseline_picker.BASELINE_VERSION) == (
        '1800000000' if expected else '')
    assert os.path.isdir(artifact.uri)


def test_the_evaluator_drops_a_no_baseline_artifact_before_tfx_runs(monkeypatch):
  seen = []
  monkeypatch.setattr(evaluator_executor.Executor, 'Do',
                      lambda self, inputs, outputs, props: seen.append(inputs))
  executor = baseline_picker.BaselineAwareEvaluatorExecutor()
  none = standard_artifacts.Model()
  none.set_int_custom_property(baseline_picker.HAS_BASELINE, 0)
  some = standard_artifacts.Model()
  some.set_int_custom_property(baseline_picker.HAS_BASELINE, 1)
  resolved = standard_artifacts.Model()  # a Resolver's Model: no such property, a baseline
  model = standard_artifacts.Model()
  for baselines, expected in (([none], None), ([some], [some]), ([resolved], [resolved])):
    executor.Do({'model': [model], 'baseline_model': baselines}, {}, {})
    assert seen[-1].get('baseline_model') == expected
    assert seen[-1]['model'] == [model]
  # TFX's own rule: has_baseline = bool(input_dict.get('baseline_model')).
  executor.Do({'model': [model]}, {}, {})
  assert 'baseline_model' not in seen[-1]


def test_push_destinations_join_as_urls_or_local_paths():
  """entropy_coder.uris: the one rule for `gs://` style roots (joined with "/", never made
  absolute) and local ones (os.path), which the picker and the Kubeflow build share."""
  from entropy_coder import uris  # pylint: disable=g-import-not-at-top
  assert uris.is_url('gs://bucket/root') and not uris.is_url('runs/local')
  assert uris.join('gs://bucket/root/', 'serving_model') == 'gs://bucket/root/serving_model'
  assert uris.join('runs/local', 'serving_model') == os.path.join('runs/local', 'serving_model')
