"""Runs a compiled Kubeflow PipelineSpec on this machine, task by task, through its own commands.

Why: a compiled pipeline is only proven by running it, and a Kubeflow cluster is not always at
hand. This plays the part of the KFP launcher for every container task, in DAG order:

1. build the task's `ExecutorInput` (what KFP substitutes for `{{$}}`): its constant
   parameters, its upstream tasks' output artifacts (as they reported them), fresh output
   artifacts under `<pipeline_root>/run-<N>/<task>/<key>` typed as the spec declares (each run
   of a spec on the same root gets the next N, as every KFP run gets its own folder; what the
   spec itself names under the root, such as the push destination, is shared), and the
   `outputFile` the executor writes its `ExecutorOutput` to;
2. run the container's exact command and args (`python -m tfx.orchestration.kubeflow.v2.
   container.kubeflow_v2_run_executor --executor_class_path ... --json_serialized_invocation_args
   <ExecutorInput>` + the Beam args), with this interpreter's folder first on PATH standing in
   for the image's `python`;
3. read `executor_output.json` for the artifacts (their metadata, e.g. split names or the
   blessing) that the downstream tasks receive.

What it does not do (a cluster's job): pods and images, caching, ML-Metadata, retries. A spec
it cannot run (not a PipelineSpec, tasks that are not containers such as Vertex's resolver
executors, parameters that are not compiled constants, a cycle) is refused before any task runs,
with a one-line UserError. `entropy-coder pipeline run-compiled SPEC --pipeline-root DIR` is its
command-line front.
"""
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List

from entropy_coder.errors import UserError, describe, opened_user_file

_INVOCATION_PLACEHOLDER = '{{$}}'
EXECUTOR_OUTPUT_FILENAME = 'executor_output.json'


def load_pipeline_spec(path):
  """The compiled YAML -> PipelineSpec proto, read the way kfp.Client reads it."""
  import yaml  # pylint: disable=g-import-not-at-top
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  try:
    with opened_user_file(path, 'a compiled pipeline .yaml', missing='no such pipeline file') as f:
      document = next(yaml.safe_load_all(f))
  except (yaml.YAMLError, UnicodeDecodeError, StopIteration) as e:
    text = ' '.join(str(e).split()) or 'empty file'
    raise UserError(describe(path, f'not a YAML pipeline ({text})')) from None
  if not isinstance(document, dict):
    raise UserError(describe(path, f'not a KFP PipelineSpec (a YAML mapping was expected, got '
                             f'{type(document).__name__})'))
  if 'pipelineSpec' in document:
    raise UserError(describe(path, 'is a Vertex PipelineJob (TFX\'s .json output), not a bare '
                             'PipelineSpec: compile to a .yaml file'))
  try:
    return json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
  except json_format.ParseError as e:
    raise UserError(describe(path, f'not a KFP PipelineSpec ({" ".join(str(e).split())})')) from None


def task_order(spec) -> List[str]:
  """Task names of the root DAG in an order where every producer precedes its consumers."""
  tasks = spec.root.dag.tasks
  needs = {name: set(task.dependent_tasks) | {
      channel.task_output_artifact.producer_task
      for channel in task.inputs.artifacts.values()
      if channel.HasField('task_output_artifact')} for name, task in tasks.items()}
  order, done = [], set()
  while len(order) < len(tasks):
    ready = sorted(name for name in tasks if name not in done and needs[name] <= done)
    if not ready:
      waiting = sorted(set(tasks) - done)
      unknown = sorted(set().union(*(needs[name] for name in waiting)) - set(tasks))
      raise UserError(f'the DAG\'s tasks {waiting} wait on '
                      + (f'tasks it does not have: {unknown}' if unknown else 'each other (a cycle)'))
    order += ready
    done.update(ready)
  return order


RUN_PREFIX = 'run-'


def next_run_dir(pipeline_root):
  """`<pipeline_root>/run-<N>` with the first N >= 1 not taken by an earlier run."""
  number = 1
  while os.path.exists(os.path.join(pipeline_root, f'{RUN_PREFIX}{number}')):
    number += 1
  return os.path.join(os.path.abspath(pipeline_root), f'{RUN_PREFIX}{number}')


def executor_input(spec, task_name, pipeline_root, upstream):
  """The ExecutorInput proto for one task, outputs under `pipeline_root` (a run's folder);
  `upstream[task][key]` = produced RuntimeArtifact."""
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  task = spec.root.dag.tasks[task_name]
  component = spec.components[task.component_ref.name]
  result = pipeline_spec_pb2.ExecutorInput()
  for key, constant in _constant_parameters(task_name, task).items():
    result.inputs.parameter_values[key].CopyFrom(constant)
  for key, (producer, output_key) in _artifact_sources(task_name, task).items():
    result.inputs.artifacts[key].artifacts.append(upstream[producer][output_key])
  task_dir = os.path.join(pipeline_root, task_name)
  for key, definition in component.output_definitions.artifacts.items():
    artifact = result.outputs.artifacts[key].artifacts.add()
    artifact.name = f'{task_name}-{key}'
    artifact.uri = os.path.join(task_dir, key)
    artifact.type.CopyFrom(definition.artifact_type)
  result.outputs.output_file = os.path.join(task_dir, EXECUTOR_OUTPUT_FILENAME)
  return result


def _constant_parameters(task_name, task):
  """{key: compiled constant} of a task's parameters; UserError for one that is not a constant
  (a pipeline-run parameter, an upstream output), which a local run cannot resolve."""
  constants = {}
  for key, parameter in task.inputs.parameters.items():
    if not parameter.runtime_value.HasField('constant'):
      raise UserError(f'task {task_name}: parameter "{key}" is not a constant; only compiled '
                      'constants are supported locally')
    constants[key] = parameter.runtime_value.constant
  return constants


def _artifact_sources(task_name, task):
  """{key: (producer task, its output key)} of a task's artifact inputs; UserError for one that
  is not a task's output (an importer, a pipeline input)."""
  sources = {}
  for key, channel in task.inputs.artifacts.items():
    if not channel.HasField('task_output_artifact'):
      raise UserError(f'task {task_name}: input "{key}" does not come from a task output; only '
                      'task outputs are supported locally')
    source = channel.task_output_artifact
    sources[key] = (source.producer_task, source.output_artifact_key)
  return sources


def task_commands(spec, task_name, invocation):
  """[(what, command + args)] of one task, `{{$}}` replaced by the JSON ExecutorInput.

  A `lifecycle.preCacheCheck` hook (TFX's driver of file-based ExampleGens: it fingerprints
  the input files and writes the span into the outputFile) runs first, as KFP runs it before
  its cache check; then the executor itself.
  """
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  task = spec.root.dag.tasks[task_name]
  label = spec.components[task.component_ref.name].executor_label
  executor = json_format.MessageToDict(spec.deployment_spec)['executors'][label]
  _check_container(task_name, executor)
  container = executor['container']
  payload = json_format.MessageToJson(invocation)

  def substituted(step):
    args = [payload if arg == _INVOCATION_PLACEHOLDER else arg for arg in step.get('args', [])]
    return list(step['command']) + args

  commands = []
  hook = container.get('lifecycle', {}).get('preCacheCheck')
  if hook:
    commands.append(('preCacheCheck', substituted(hook)))
  commands.append(('executor', substituted(container)))
  return commands, container.get('image', '')


def _check_container(task_name, executor):
  if 'container' not in executor:
    kind = ', '.join(sorted(executor)) or 'empty'
    raise UserError(f'task {task_name} is a {kind} executor, not a container: open-source KFP '
                    'and this runner execute only containers (TFX compiles its Resolver to '
                    'Vertex-only resolver executors)')
  if not executor['container'].get('command'):
    raise UserError(f'task {task_name}: its container has no command')


def check_runnable(spec, source='the pipeline spec'):
  """Refuses, before anything runs, a spec this runner cannot execute: a one-line UserError
  naming `source` and the task (no tasks; a component or executor the spec does not define; an
  executor that is not a container; a parameter that is not a compiled constant; an input
  that is no task's output; a cycle)."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  tasks = spec.root.dag.tasks
  if not tasks:
    raise UserError(describe(source, 'the pipeline has no tasks'))
  executors = json_format.MessageToDict(spec.deployment_spec).get('executors', {})
  try:
    for name, task in tasks.items():
      component = task.component_ref.name
      if component not in spec.components:
        raise UserError(f'task {name} runs component "{component}", which the spec does not '
                        'define')
      label = spec.components[component].executor_label
      if label not in executors:
        raise UserError(f'task {name}: executor "{label}" of component "{component}" is not in '
                        'the deployment spec')
      _check_container(name, executors[label])
    for name, task in tasks.items():
      _constant_parameters(name, task)
      for key, (producer_name, output_key) in _artifact_sources(name, task).items():
        producer = tasks.get(producer_name)
        if producer is None:
          continue  # task_order names the missing task
        outputs = spec.components[producer.component_ref.name].output_definitions.artifacts
        if output_key not in outputs:
          raise UserError(f'task {name}: input "{key}" is output "{output_key}" of task '
                          f'{producer_name}, which has no such output')
    task_order(spec)
  except UserError as e:
    raise UserError(describe(source, str(e))) from None


def run_compiled(spec_path: str, pipeline_root: str,
                 progress: Callable[[str], None] = None, run_dir: str = None) -> Dict[str, Dict]:
  """Runs every task of the compiled pipeline; returns {task: {output key: RuntimeArtifact}}.

  Artifacts and logs go to `run_dir` (default `next_run_dir(pipeline_root)`)."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
  spec = load_pipeline_spec(spec_path)
  check_runnable(spec, spec_path)
  pipeline_root = os.path.abspath(run_dir or next_run_dir(pipeline_root))
  env = dict(os.environ)
  # The image's `python` is the one with the project installed: here, this interpreter.
  env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
  produced = {}
  order = task_order(spec)
  for number, task_name in enumerate(order, 1):
    invocation = executor_input(spec, task_name, pipeline_root, produced)
    commands, image = task_commands(spec, task_name, invocation)
    os.makedirs(os.path.dirname(invocation.outputs.output_file), exist_ok=True)
    progress(f'[{number}/{len(order)}] {task_name} (image {image}) ...')
    start = time.monotonic()
    for what, command in commands:
      completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
      log_path = os.path.join(pipeline_root, task_name, f'{what}.log')
      with open(log_path, 'w', encoding='utf-8') as log:
        log.write(completed.stdout + completed.stderr)
      if completed.returncode:
        last = (completed.stderr.strip().splitlines() or ['(no output)'])[-1]
        raise UserError(f'task {task_name} ({what}) failed with exit status '
                        f'{completed.returncode}: {last} (full log: {log_path})')
    output = pipeline_spec_pb2.ExecutorOutput()
    try:
      with open(invocation.outputs.output_file, encoding='utf-8') as f:
        json_format.Parse(f.read(), output, ignore_unknown_fields=True)
    except FileNotFoundError:
      raise UserError(f'task {task_name} exited 0 but wrote no {EXECUTOR_OUTPUT_FILENAME} '
                      f'(full log: {log_path})') from None
    produced[task_name] = {}
    for key, declared in invocation.outputs.artifacts.items():
      artifact = declared.artifacts[0]
      reported = output.artifacts[key].artifacts if key in output.artifacts else []
      if reported:
        # The executor reports uri and metadata; the type comes from the spec.
        merged = pipeline_spec_pb2.RuntimeArtifact()
        merged.CopyFrom(reported[0])
        merged.type.CopyFrom(artifact.type)
        merged.name = merged.name or artifact.name
        artifact = merged
      produced[task_name][key] = artifact
    progress(f'[{number}/{len(order)}] {task_name} done in {time.monotonic() - start:.0f}s')
  return produced


def artifact_metadata(artifact) -> Dict:
  """A RuntimeArtifact's metadata as a plain dict (e.g. {'blessed': 1.0} on a blessing)."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  return json.loads(json_format.MessageToJson(artifact.metadata))


def outputs_as_json(produced) -> Dict[str, Dict[str, Dict]]:
  """`run_compiled`'s result as plain data: {task: {output key: {'uri', 'metadata'}}}."""
  return {task: {key: {'uri': artifact.uri, 'metadata': artifact_metadata(artifact)}
                 for key, artifact in outputs.items()}
          for task, outputs in produced.items()}
