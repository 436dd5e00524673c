"""Resource requests of the compiled Kubeflow tasks: parsed from the CLI, written into the spec.

TFX's KubeflowV2DagRunner has no way to express them (the CLI's `--trainer-gpus`,
`--cpu-request`, `--memory-request`, `--cpu-limit`, `--memory-limit`), so
pipeline/kubeflow_runner.py writes them into the compiled spec afterwards, in exactly the form
kfp 2.0.1's own compiler writes for `.set_cpu_request / .set_memory_request / .set_cpu_limit /
.set_memory_limit / .set_accelerator_type / .set_accelerator_limit`
(`deploymentSpec.executors.<exec>.container.resources`: `cpuRequest`, `memoryRequest`,
`cpuLimit`, `memoryLimit` as numbers, CPUs and GB, and `accelerator {type, count}`), parsed by
kfp's own validators.
"""
from entropy_coder.errors import UserError

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
  check_tasks(resources, tasks)
  executors = document['deploymentSpec']['executors']
  for name, task in tasks.items():
    wanted = {**resources.get('*', {}), **resources.get(name, {})}
    if not wanted:
      continue
    label = document['components'][task['componentRef']['name']]['executorLabel']
    spec = executors[label]['container'].setdefault('resources', {})
    for field, value in wanted.items():
      spec[_RESOURCE_FIELDS.get(field, field)] = value


def check_tasks(resources, tasks):
  """UserError unless every task `resources` names (but '*') is one of the pipeline's `tasks`."""
  unknown = sorted(set(resources) - set(tasks) - {'*'})
  if unknown:
    raise UserError(f'resources for task(s) {unknown}, which the pipeline does not have; its '
                    f'tasks are {sorted(tasks)}')
