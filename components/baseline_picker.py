"""BaselinePicker: the newest pushed model as the Evaluator's baseline, on open-source Kubeflow.

Why: TFX compiles its latest-blessed-model Resolver to Vertex-only `resolver` executors (ML
Metadata queries) that the open-source KFP backend does not run. This container component reads
the Pusher's destination instead: TFX's Pusher copies every model it pushes (only when all its
blessings hold) to `<serving_model_dir>/<version>/`, the version a Unix timestamp, so the
newest numbered folder there holding a `saved_model.pb` is the newest model that was blessed and
pushed.

    serving_model_dir/<version>/ --newest--> BaselinePicker --baseline (Model)--> Evaluator

Output `baseline` (standard `Model`): the pushed model copied into `<uri>/Format-Serving/` (the
layout of the Trainer's Model, which TFX's Evaluator reads through
`path_utils.serving_model_path`), custom properties `has_baseline` = 1, `baseline_source` (the
version folder) and `baseline_version`. With nothing pushed yet (the first run) it logs
"no baseline", writes an empty artifact with `has_baseline` = 0 and the reason in
`baseline_source`.

A typed output cannot be absent in KFP v2, so the "no baseline" artifact reaches the Evaluator.
TFX 1.16's Evaluator executor decides whether there is a baseline by
`has_baseline = bool(input_dict.get('baseline_model'))`
(tfx/components/evaluator/executor.py) and then lets TFMA drop the change thresholds
(`update_eval_config_with_defaults(..., has_baseline=False, rubber_stamp=True)`).
`BaselineAwareEvaluator` is TFX's Evaluator with one executor change: it removes a baseline
artifact whose `has_baseline` is 0 from `input_dict` before TFX's `Do` runs, so the first run is
evaluated exactly as an Evaluator given no baseline (the absolute bound alone) and later runs
compare with the picked model (TFMA's `*_diff` metrics and the change threshold).
"""
import os
import re

from absl import logging
from tfx.components.evaluator import component as evaluator_component
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from entropy_coder import model_files
from entropy_coder import uris

HAS_BASELINE = 'has_baseline'
BASELINE_SOURCE = 'baseline_source'
BASELINE_VERSION = 'baseline_version'
# The Trainer's serving export's place in a Model artifact, which the Evaluator reads.
SERVING_SUBDIR = model_files.TRAINER_SERVING_SUBDIR
_VERSION = re.compile(r'^\d+$')


def newest_pushed_model(serving_model_dir):
  """-> (path of the newest `<serving_model_dir>/<version>` with a saved_model.pb, or None;
  a one-line description of what was found)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.isdir(serving_model_dir):
    return None, f'no baseline: {serving_model_dir} does not exist (nothing pushed yet)'
  versions = sorted((int(name.rstrip('/')) for name in tf.io.gfile.listdir(serving_model_dir)
                     if _VERSION.match(name.rstrip('/'))), reverse=True)
  for version in versions:
    path = uris.join(serving_model_dir, str(version))
    if tf.io.gfile.exists(uris.join(path, 'saved_model.pb')):
      return path, f'baseline: the newest pushed model {path}'
  return None, f'no baseline: no pushed model version in {serving_model_dir} (nothing pushed yet)'


def _copy_tree(source, destination):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.io.gfile.makedirs(destination)
  for name in tf.io.gfile.listdir(source):
    name = name.rstrip('/')
    path = uris.join(source, name)
    if tf.io.gfile.isdir(path):
      _copy_tree(path, uris.join(destination, name))
    else:
      tf.io.gfile.copy(path, uris.join(destination, name), overwrite=True)


def pick_baseline(serving_model_dir, output_uri):
  """Copies the newest pushed model into `<output_uri>/Format-Serving`; -> (version or '',
  description). Nothing pushed: copies nothing, version ''."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path, description = newest_pushed_model(serving_model_dir)
  tf.io.gfile.makedirs(output_uri)
  if path is None:
    return '', description
  _copy_tree(path, uris.join(output_uri, SERVING_SUBDIR))
  return os.path.basename(path.rstrip('/')), description


@component
def BaselinePicker(  # pylint: disable=invalid-name
    baseline: OutputArtifact[standard_artifacts.Model],
    serving_model_dir: Parameter[str],
):
  """The newest model pushed to `serving_model_dir` as a Model (`has_baseline` 1), or an empty
  Model with `has_baseline` 0 when nothing was pushed yet."""
  version, description = pick_baseline(serving_model_dir, baseline.uri)
  logging.info('BaselinePicker: %s', description)
  print(f'BaselinePicker: {description}', flush=True)
  baseline.set_int_custom_property(HAS_BASELINE, int(bool(version)))
  baseline.set_string_custom_property(BASELINE_SOURCE, description)
  baseline.set_string_custom_property(BASELINE_VERSION, version)


def has_baseline(artifact):
  """False only for BaselinePicker's "no baseline" artifact (custom property has_baseline 0);
  any other Model (e.g. a Resolver's) is a baseline."""
  if not artifact.has_custom_property(HAS_BASELINE):
    return True
  return bool(int(artifact.get_custom_property(HAS_BASELINE) or 0))


class BaselineAwareEvaluatorExecutor(evaluator_executor.Executor):
  """TFX's Evaluator executor; a "no baseline" artifact is removed from the inputs first, so TFX
  evaluates without a baseline (has_baseline False: TFMA skips the change thresholds)."""

  def Do(self, input_dict, output_dict, exec_properties):
    key = standard_component_specs.BASELINE_MODEL_KEY
    baselines = list(input_dict.get(key) or [])
    kept = [artifact for artifact in baselines if has_baseline(artifact)]
    if len(kept) != len(baselines):
      logging.info('Evaluator: no baseline (%s); the change thresholds are skipped',
                   baselines[0].get_custom_property(BASELINE_SOURCE) if baselines else '')
      input_dict = dict(input_dict)
      if kept:
        input_dict[key] = kept
      else:
        input_dict.pop(key, None)
    return super().Do(input_dict, output_dict, exec_properties)


class BaselineAwareEvaluator(evaluator_component.Evaluator):
  """TFX's Evaluator (same spec, inputs and outputs) whose executor honours `has_baseline` 0."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BaselineAwareEvaluatorExecutor)
