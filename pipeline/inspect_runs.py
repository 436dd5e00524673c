"""Reads a pipeline root back: the latest Evaluator run, its metrics, blessing, baseline and push.

Everything is found through ML-Metadata (`<root>/metadata.sqlite`), never by guessing folder
names: the latest Evaluator execution (run or cache hit) -> its input events give the
candidate and baseline models, its output events the evaluation and the blessing; the Pusher
execution that consumed that blessing gives the pushed model; the RealCompressionCheck
execution of the candidate model (finished or FAILED) gives the real-bitstream report and the
round-trip blessing the Pusher also required. Metric values come from TFMA's
own reader (`tfma.load_eval_result`), so the CLI shows exactly what a notebook would.

Named `inspect_runs` rather than `inspect` so it can never shadow the standard library's
`inspect` (which TensorFlow and Beam import) when a script runs from inside this folder.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional

from entropy_coder.errors import UserError, describe
from entropy_coder.pipeline import configs

_EVALUATOR_TYPE_SUFFIX = '.Evaluator'
_PUSHER_TYPE_SUFFIX = '.Pusher'
_REAL_COMPRESSION_TYPE_SUFFIX = '.RealCompressionCheck'
_SYNTHETIC_SOURCE_TYPE_SUFFIX = '.SyntheticCodeGen'


@dataclasses.dataclass
class Evaluation:
  """One Evaluator execution and what surrounds it."""
  execution_id: int
  state: str  # COMPLETE (ran) or CACHED (re-used an earlier output)
  evaluation_uri: str
  model_uri: str
  baseline_model_uri: Optional[str]
  blessed: Optional[bool]
  metrics: Dict[str, float]
  baseline_metrics: Optional[Dict[str, float]]
  changes: Dict[str, float]  # TFMA's candidate - baseline, when there was a baseline
  failed_checks: List[str]
  pushed_model_uri: Optional[str]
  # RealCompressionCheck's report (numbers, `round_trip_ok`) plus `blessed` (its InfraBlessing,
  # None when not recorded), `reason` (why not blessed) and `state` (COMPLETE, CACHED, FAILED).
  real_compression: Optional[Dict[str, object]]
  # The best code length possible on this eval split, when the source is known (synthetic
  # codes): `visibility` (the progressive model's factorisation, what it can reach) and
  # `source_entropy` (every earlier bit seen); None for imported codes.
  floor: Optional[Dict[str, float]] = None
  # The Trainer's summary beside the candidate's export (train_loop.TRAIN_SUMMARY_FILE): the
  # train and eval code lengths, the exported step and the overfitting note; None if absent.
  training: Optional[Dict[str, object]] = None

  @property
  def layer_names(self):
    from entropy_coder.pipeline import tfma_metrics  # pylint: disable=g-import-not-at-top
    return sorted(name for name in self.metrics if name.startswith(tfma_metrics.LAYER_PREFIX))

  def to_json(self):
    return dataclasses.asdict(self)


def open_store(root):
  """The ML-Metadata store of a local pipeline root; a one-line UserError when there is none."""
  path = os.path.join(root, configs.METADATA_FILENAME)
  if not os.path.isdir(root):
    raise UserError(describe(root, 'no such pipeline root'))
  if not os.path.isfile(path):
    raise UserError(describe(root, f'no ML-Metadata store ({configs.METADATA_FILENAME}) here: '
                             'run `entropy-coder pipeline run` first'))
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def _executions_of(store, type_suffix, with_failed=False):
  """Finished executions (run or cached; `with_failed` also FAILED ones) of node types whose
  name ends with `type_suffix`."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
  if with_failed:
    done += (metadata_store_pb2.Execution.FAILED,)
  found = []
  for execution_type in store.get_execution_types():
    if execution_type.name.endswith(type_suffix):
      found += [e for e in store.get_executions_by_type(execution_type.name)
                if e.last_known_state in done]
  return sorted(found, key=lambda e: e.id)


def _artifacts_by_key(store, execution_id, event_types):
  """{input/output key: [artifact]} of one execution."""
  events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in event_types]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  by_key = {}
  for event in events:
    key = event.path.steps[0].key if event.path.steps else ''
    by_key.setdefault(key, []).append(artifacts[event.artifact_id])
  return by_key


def _inputs(store, execution_id):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  return _artifacts_by_key(store, execution_id, (metadata_store_pb2.Event.INPUT,))


def _outputs(store, execution_id):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  return _artifacts_by_key(store, execution_id, (metadata_store_pb2.Event.OUTPUT,
                                                 metadata_store_pb2.Event.DECLARED_OUTPUT))


def _property(artifact, name):
  value = artifact.custom_properties.get(name)
  if value is None:
    return None
  return getattr(value, value.WhichOneof('value'))


def _single(by_key, key):
  found = by_key.get(key) or []
  return found[0] if found else None


def read_metrics(evaluation_uri):
  """{'candidate'|'baseline': {'metrics': {...}, 'changes': {...}, 'location': model path}}.

  From TFMA's own files: the eval run names the models it evaluated and where they were
  loaded from (the baseline too, which ML-Metadata cannot show as a separate input event
  when it is the very artifact being evaluated); `<metric>_diff` values are TFMA's
  candidate - baseline.
  """
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.writers import eval_config_writer  # pylint: disable=g-import-not-at-top
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  eval_config, _, _, locations = eval_config_writer.load_eval_run(evaluation_uri)
  specs = list(eval_config.model_specs) if eval_config else []
  by_role = {}
  for spec in specs or [None]:
    name = spec.name if spec is not None else ''
    result = tfma.load_eval_result(evaluation_uri, model_name=name or None)
    values, changes = {}, {}
    for slice_key, by_output in result.slicing_metrics:
      if slice_key != ():
        continue
      for metric, value in by_output.get('', {}).get('', {}).items():
        if 'doubleValue' not in value:
          continue
        if metric.endswith(_DIFF_SUFFIX):
          changes[metric[:-len(_DIFF_SUFFIX)]] = float(value['doubleValue'])
        else:
          values[metric] = float(value['doubleValue'])
    role = 'baseline' if spec is not None and spec.is_baseline else 'candidate'
    location = locations.get(name)
    if location and os.path.basename(location.rstrip('/')) == model_files.TRAINER_SERVING_SUBDIR:
      location = os.path.dirname(location.rstrip('/'))  # the Model artifact's URI
    by_role[role] = {'metrics': values, 'changes': changes, 'location': location}
  return by_role


_DIFF_SUFFIX = '_diff'


def _failed_checks(evaluation_uri):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  try:
    validation = tfma.load_validation_result(evaluation_uri)
  except (OSError, IndexError, ValueError):
    return []
  failed = []
  for per_slice in validation.metric_validations_per_slice:
    for failure in per_slice.failures:
      kind = 'change vs baseline' if failure.metric_key.is_diff else 'bound'
      failed.append(f'{failure.metric_key.name} ({kind}): {failure.message.strip()}')
  return failed


def latest_evaluation(root) -> Evaluation:
  """The newest finished Evaluator execution under `root`, with its metrics and its push."""
  store = open_store(root)
  evaluations = _executions_of(store, _EVALUATOR_TYPE_SUFFIX)
  if not evaluations:
    raise UserError(describe(root, 'the ML-Metadata store has no finished Evaluator run yet'))
  execution = evaluations[-1]
  inputs, outputs = _inputs(store, execution.id), _outputs(store, execution.id)
  evaluation = _single(outputs, 'evaluation')
  blessing = _single(outputs, 'blessing')
  if evaluation is None:
    raise UserError(describe(root, f'Evaluator execution {execution.id} has no recorded '
                             'evaluation'))
  by_role = read_metrics(evaluation.uri)
  candidate = by_role.get('candidate', {})
  baseline = by_role.get('baseline')
  model = _candidate_model(inputs, candidate.get('location'))
  pusher = _pusher_of(store, blessing) if blessing is not None else None
  blessed = None
  if blessing is not None:
    flag = _property(blessing, 'blessed')
    blessed = bool(flag) if flag is not None else None

  return Evaluation(
      execution_id=execution.id,
      state=_state_name(execution.last_known_state),
      evaluation_uri=evaluation.uri,
      model_uri=model.uri if model is not None else candidate.get('location'),
      baseline_model_uri=baseline['location'] if baseline else None,
      blessed=blessed,
      metrics=candidate.get('metrics', {}),
      baseline_metrics=baseline['metrics'] if baseline else None,
      changes=candidate.get('changes', {}),
      failed_checks=_failed_checks(evaluation.uri),
      pushed_model_uri=_pushed_uri(store, pusher),
      real_compression=_real_compression(store, model, pusher) if model is not None else None,
      floor=_synthetic_floor(store, model) if model is not None else None,
      training=_training_summary(model.uri if model is not None else None))


def _training_summary(model_uri):
  """The Trainer's train_summary.json in the model's serving export, or None."""
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import train_loop  # pylint: disable=g-import-not-at-top (TF, as TFMA)
  if not model_uri:
    return None
  path = os.path.join(model_uri, model_files.TRAINER_SERVING_SUBDIR, train_loop.TRAIN_SUMMARY_FILE)
  try:
    with open(path, encoding='utf-8') as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  return summary if isinstance(summary, dict) else None


def _candidate_model(inputs, location):
  """The evaluated Model artifact among the execution's inputs.

  Not simply the 'model' input: when the baseline is the candidate itself, ML-Metadata keeps
  one INPUT event for the artifact and a cached execution may file it under 'baseline_model'.
  TFMA's record of the candidate's location decides.
  """
  models = [a for key in ('model', 'baseline_model') for a in inputs.get(key, [])]
  for artifact in models:
    if location and artifact.uri.rstrip('/') == location.rstrip('/'):
      return artifact
  return _single(inputs, 'model')


def _state_name(state):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  return metadata_store_pb2.Execution.State.Name(state)


def _pusher_of(store, blessing):
  """The newest Pusher execution that consumed the Evaluator's `blessing`, or None."""
  for execution in reversed(_executions_of(store, _PUSHER_TYPE_SUFFIX)):
    consumed = _single(_inputs(store, execution.id), 'model_blessing')
    if consumed is not None and consumed.id == blessing.id:
      return execution
  return None


def _pushed_uri(store, pusher):
  """Where `pusher` (an execution) pushed the model, or None (not pushed, or no Pusher ran)."""
  if pusher is None:
    return None
  pushed = _single(_outputs(store, pusher.id), 'pushed_model')
  if pushed is not None and _property(pushed, 'pushed'):
    return _property(pushed, 'pushed_destination')
  return None


def _real_compression(store, model, pusher=None):
  """What RealCompressionCheck found for this model: its report, its blessing and its state.

  The check whose blessing `pusher` (the Pusher of this evaluation) consumed, so the push line
  and the round-trip line tell of the same decision; without one, the newest check execution
  that consumed `model`, FAILED ones included, so that a check that broke is shown as such
  rather than hidden (a failed execution blessed nothing: nothing was pushed).
  """
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  checks = _executions_of(store, _REAL_COMPRESSION_TYPE_SUFFIX, with_failed=True)
  consumed_blessing = _single(_inputs(store, pusher.id), 'infra_blessing') if pusher else None
  if consumed_blessing is not None:
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
    producers = {e.execution_id for e in store.get_events_by_artifact_ids([consumed_blessing.id])
                 if e.type == metadata_store_pb2.Event.OUTPUT}
    checks = [e for e in checks if e.id in producers] or checks
  for execution in reversed(checks):
    consumed = _single(_inputs(store, execution.id), 'model')
    if consumed is None or consumed.id != model.id:
      continue
    state = _state_name(execution.last_known_state)
    outputs = _outputs(store, execution.id)
    output, blessing = _single(outputs, 'compression'), _single(outputs, 'blessing')
    report = {}
    if output is not None:
      try:
        with open(os.path.join(output.uri, real_compression.REPORT_FILE), encoding='utf-8') as f:
          report = json.load(f)
      except (OSError, ValueError):
        report = {}
    found = {k: v for k, v in report.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    found['round_trip_ok'] = bool(report.get('round_trip_ok'))
    found['state'] = state
    if state == 'FAILED':
      found['blessed'] = False
      found['reason'] = (f'the RealCompressionCheck execution {execution.id} FAILED (its log '
                         'has the error), so nothing blessed the push')
    elif blessing is not None:
      flag = _property(blessing, 'blessed')
      found['blessed'] = bool(flag) if flag is not None else None
      found['reason'] = _property(blessing, 'reason') or ''
    else:  # a run from before the check blessed pushes
      found['blessed'] = None
      found['reason'] = ''
    return found
  return None


def _producer(store, artifact):
  """The execution that output `artifact`, or None."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  ids = [e.execution_id for e in store.get_events_by_artifact_ids([artifact.id])
         if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
  return store.get_executions_by_id(ids[:1])[0] if ids else None


def _synthetic_floor(store, model):
  """Exact floors (data_gen/floors.py) of the eval split the model was trained beside, when
  that split came from SyntheticCodeGen; None otherwise (the floor of imported codes is
  unknown) or when the artifacts are gone."""
  trainer = _producer(store, model)
  examples = _single(_inputs(store, trainer.id), 'examples') if trainer is not None else None
  source = _producer(store, examples) if examples is not None else None
  if source is None:
    return None
  type_name = store.get_execution_types_by_id([source.type_id])[0].name
  if not type_name.endswith(_SYNTHETIC_SOURCE_TYPE_SUFFIX):
    return None
  import glob  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from entropy_coder import codes_format, model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import floors  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import splits  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(splits.split_dir(examples.uri, splits.EVAL_SPLIT), '*')))
  try:
    config = model_files.read_model_files(model_files.resolve_model_dir(model.uri)).model_config
    codes = [code for _, code in codes_format.iter_tfrecord_codes(files)]
  except (UserError, OSError):
    return None
  if not codes or len({c.shape for c in codes}) != 1:
    return None
  codes = np.stack(codes)
  causal = bool(config.get('channel_causal', False))
  return {'visibility': floors.code_length(
              codes, floors.ideal_probabilities(codes, config['layer_depth'], causal)),
          'source_entropy': floors.code_length(
              codes, floors.ideal_probabilities(codes, config['layer_depth'], True))}
