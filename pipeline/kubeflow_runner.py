"""Compiles the same DAG for Kubeflow Pipelines (KFP 2): binds the KubeflowV2DagRunner, no more.

`KubeflowV2DagRunner` writes a bare PipelineSpec 2.1 as YAML (`use_pipeline_spec_2_1=True`,
`.yaml` output), which `kfp.Client` uploads; TFX's `.json` output is a Vertex PipelineJob
wrapper that `kfp.Client` refuses, so only `.yaml`/`.yml` are written. Every task runs
`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor` in `image`,
which must have this project installed (the top-level Dockerfile builds it).

Open-source KFP cannot run TFX's Resolver node: it compiles to two `resolver` executors
(Vertex ML Metadata artifact queries: the latest ModelBlessing with blessed = 1, then the Model
it names), and the open-source backend runs only container and importer executors. So the
Kubeflow build replaces it with BaselinePicker (`baseline_from_pushes=True`), a container task
that hands the newest model pushed to `<pipeline_root>/serving_model` to the Evaluator as its
baseline (none on the first run; components/baseline_picker.py). Its task is compiled with
caching off: its answer depends on the pushes of earlier runs, not on its inputs.

Resource requests (`compile_pipeline(resources=...)`, the CLI's `--trainer-gpus`, `--cpu-request`,
`--memory-request`, `--cpu-limit`, `--memory-limit`): TFX's V2 runner has no way to express
them, so they are written into the compiled spec afterwards, in exactly the form kfp 2.0.1's own
compiler writes for `.set_cpu_request / .set_memory_request / .set_cpu_limit / .set_memory_limit
/ .set_accelerator_type / .set_accelerator_limit` (`deploymentSpec.executors.<exec>.container.
resources`: `cpuRequest`, `memoryRequest`, `cpuLimit`, `memoryLimit` as numbers, CPUs and GB,
and `accelerator {type, count}`), parsed by kfp's own validators.

Uploading a compiled file and starting a run is `entropy_coder.pipeline.kfp_submit`; running one
on this machine, task by task, is `entropy_coder.pipeline.kfp_local`.
"""
import os

from entropy_coder.errors import UserError, describe
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import kfp_submit


def create_kubeflow_pipeline(settings: configs.RunSettings, pipeline_root: str,
                             pipeline_name: str = configs.PIPELINE_NAME):
  """The local pipeline's DAG, BaselinePicker for the Resolver; everything under pipeline_root."""
  from entropy_coder.pipeline import pipeline  # pylint: disable=g-import-not-at-top  (TFX: slow)
  return pipeline.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      serving_model_dir=_join(pipeline_root, configs.SERVING_MODEL_DIRNAME),
      codes_dir=settings.codes_dir,
      use_resolver=False,
      baseline_from_pushes=True,
      enable_cache=True,
      **settings.pipeline_arguments(),
      metadata_connection_config=None,  # KFP brings its own ML-Metadata
      beam_pipeline_args=configs.IN_PROCESS_BEAM_ARGS)


def _join(root, name):
  return root.rstrip('/') + '/' + name if '://' in root else os.path.join(root, name)


DEFAULT_GPU_TYPE = 'nvidia.com/gpu'
TRAINER_TASK = 'Trainer'
# resources[task] keys: kfp's setter names without `set_`, and the spec field each becomes.
_RESOURCE_FIELDS = {'cpu_request': 'cpuRequest', 'memory_request': 'memoryRequest',
                    'cpu_limit': 'cpuLimit', 'memory_limit': 'memoryLimit'}


def parse_resources(cpu_request=(), memory_request=(), cpu_limit=(), memory_limit=(),
                    trainer_gpus=0, gpu_type=DEFAULT_GPU_TYPE):
  """CLI values -> {task or '*': {field: value}}; each value 'AMOUNT' (every task) or
  'TASK=AMOUNT', AMOUNT as kfp takes it ('2', '500m'; '4G', '512Mi'). One-line UserErrors."""
  from kfp.components import pipeline_task  # pylint: disable=g-import-not-at-top
  validators = {'cpu_request': pipeline_task.PipelineTask._validate_cpu_request_limit,  # pylint: disable=protected-access
                'cpu_limit': pipeline_task.PipelineTask._validate_cpu_request_limit,  # pylint: disable=protected-access
                'memory_request': pipeline_task.PipelineTask._validate_memory_request_limit,  # pylint: disable=protected-access
                'memory_limit': pipeline_task.PipelineTask._validate_memory_request_limit}  # pylint: disable=protected-access
  resources = {}
  for field, values in (('cpu_request', cpu_request), ('memory_request', memory_request),
                        ('cpu_limit', cpu_limit), ('memory_limit', memory_limit)):
    flag = '--' + field.replace('_', '-')
    for value in values or ():
      task, _, amount = value.rpartition('=')
      task = task.strip() or '*'
      try:
        number = validators[field](None, amount.strip())
      except ValueError as e:
        raise UserError(f'{flag} {value}: {e}') from None
      resources.setdefault(task, {})[field] = number
  if isinstance(trainer_gpus, bool) or not isinstance(trainer_gpus, int) or trainer_gpus < 0:
    raise UserError(f'--trainer-gpus {trainer_gpus}: must be an int >= 0')
  if trainer_gpus:
    if not gpu_type or not gpu_type.strip():
      raise UserError('--gpu-type: must name the accelerator, e.g. nvidia.com/gpu')
    resources.setdefault(TRAINER_TASK, {})['accelerator'] = {'type': gpu_type.strip(),
                                                             'count': str(trainer_gpus)}
  for task, own in resources.items():
    wanted = {**resources.get('*', {}), **own}
    for kind in ('cpu', 'memory'):
      request, limit = wanted.get(f'{kind}_request'), wanted.get(f'{kind}_limit')
      if request is not None and limit is not None and request > limit:
        where = 'every task' if task == '*' else f'task {task}'
        raise UserError(f'--{kind}-request is above --{kind}-limit for {where} '
                        f'({request:g} > {limit:g}' + (' GB)' if kind == 'memory' else ' CPUs)'))
  return resources


def apply_resources(document, resources):
  """Writes `resources` ({task or '*': {field: value}}) into a compiled spec (YAML data), per
  task's executor, as kfp 2.0.1's compiler does; a task's own values beat '*'."""
  tasks = document['root']['dag']['tasks']
  unknown = sorted(set(resources) - set(tasks) - {'*'})
  if unknown:
    raise UserError(f'resources for task(s) {unknown}, which the pipeline does not have; its '
                    f'tasks are {sorted(tasks)}')
  executors = document['deploymentSpec']['executors']
  for name, task in tasks.items():
    wanted = {**resources.get('*', {}), **resources.get(name, {})}
    if not wanted:
      continue
    label = document['components'][task['componentRef']['name']]['executorLabel']
    spec = executors[label]['container'].setdefault('resources', {})
    for field, value in wanted.items():
      spec[_RESOURCE_FIELDS.get(field, field)] = value


def compile_pipeline(output_file: str, settings: configs.RunSettings,
                     image: str = configs.DEFAULT_IMAGE,
                     pipeline_root: str = configs.DEFAULT_KFP_PIPELINE_ROOT,
                     resources=None) -> str:
  """Writes the PipelineSpec YAML to `output_file`; returns its path.

  `resources`: `parse_resources(...)`'s {task or '*': {field: value}}, written into the
  executors' container specs (checked before compiling: an unknown task is a UserError)."""
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # pylint: disable=g-import-not-at-top
  if not output_file.endswith(kfp_submit.PACKAGE_SUFFIXES):
    raise UserError(describe(output_file, 'the compiled pipeline must be a .yaml or .yml file '
                             '(kfp.Client reads only those; TFX .json is a Vertex PipelineJob)'))
  directory = os.path.dirname(os.path.abspath(output_file))
  if not os.path.isdir(directory):
    raise UserError(describe(directory, 'output directory does not exist'))
  runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
          default_image=image, use_pipeline_spec_2_1=True),
      output_dir=directory,
      output_filename=os.path.basename(output_file))
  dag = create_kubeflow_pipeline(settings, pipeline_root)
  task_names = {node.id for node in dag.components}
  unknown = sorted(set(resources or {}) - task_names - {'*'})
  if unknown:
    raise UserError(f'resources for task(s) {unknown}, which the pipeline does not have; its '
                    f'tasks are {sorted(task_names)}')
  runner.run(dag, write_out=True)
  from entropy_coder.pipeline import pipeline  # pylint: disable=g-import-not-at-top

  def edit(document):
    _disable_cache(document, [pipeline.BASELINE_PICKER_ID])
    apply_resources(document, resources or {})
  _rewrite_spec(output_file, edit)
  return output_file


def _rewrite_spec(path, edit):
  """Loads the compiled YAML, applies `edit(document)` in place, writes it back."""
  import yaml  # pylint: disable=g-import-not-at-top
  with open(path, encoding='utf-8') as f:
    document = yaml.safe_load(f)
  edit(document)
  with open(path, 'w', encoding='utf-8') as f:
    yaml.safe_dump(document, f, sort_keys=True)


def _disable_cache(document, task_names):
  """KFP must run these tasks every time (TFX's compiler caches all tasks or none)."""
  tasks = document['root']['dag']['tasks']
  for name in task_names:
    tasks[name]['cachingOptions'] = {'enableCache': False}
