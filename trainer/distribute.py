"""Where training runs: the devices, the tf.distribute strategy, XLA, and which process writes.

The choice is a pure function of the local GPU list and TF_CONFIG (`choose_strategy`), so every
case (no GPU, one, several, a multi-worker cluster) is tested with simulated device lists on a
machine without GPUs; `this_process()` applies it to the real devices and environment.

| devices / TF_CONFIG                              | strategy                                   |
|--------------------------------------------------|--------------------------------------------|
| no GPU                                           | the default strategy (one replica, CPU)    |
| 1 GPU                                            | OneDeviceStrategy('/gpu:0')                |
| N >= 2 GPUs                                      | MirroredStrategy(['/gpu:0', ... ])         |
| TF_CONFIG naming >= 2 workers (chief + workers)  | MultiWorkerMirroredStrategy (each worker   |
|                                                  | uses all its local GPUs, else its CPU)     |

A TF_CONFIG whose cluster has a single worker (Vertex sets one even for one machine) is the
local case. `ps`, `evaluator` and the legacy `master` jobs are refused: this trainer is
synchronous data-parallel only.

XLA (`jit_compile` of the forward and backward pass) is on by default when the replicas run on
GPUs and off on CPU, where compiling costs more than it saves in short runs; `xla=True/False`
overrides it.

Multi-worker writes (TF's MultiWorkerMirroredStrategy guide): every worker runs the same
saves (they may run collective ops), but only the chief writes into the train directory; the
others save into a fresh local temporary directory that is removed right after.
"""
import dataclasses
import json
import os
import shutil
import tempfile

from entropy_coder.errors import UserError

KIND_DEFAULT = 'default'
KIND_ONE_DEVICE = 'one_device'
KIND_MIRRORED = 'mirrored'
KIND_MULTI_WORKER = 'multi_worker'


@dataclasses.dataclass(frozen=True)
class Cluster:
  """The training cluster TF_CONFIG names: workers (chief first, if any) and this task."""
  chief_count: int  # 0 or 1
  worker_count: int  # tasks of job 'worker'
  task_type: str  # 'chief' or 'worker'
  task_index: int

  @property
  def num_workers(self):
    return self.chief_count + self.worker_count

  @property
  def is_chief(self):
    """TF's rule (multi_worker_util.is_chief): the 'chief' task, else worker 0."""
    return self.task_type == 'chief' or (self.task_type == 'worker' and self.task_index == 0
                                         and not self.chief_count)

  @property
  def worker_index(self):
    """This task's rank among all workers, the chief being 0."""
    return self.task_index + (self.chief_count if self.task_type == 'worker' else 0)

  def role(self):
    name = f'{self.task_type} {self.task_index}'
    return f'{name}, the chief' if self.is_chief else f'{name}, not the chief'


def parse_tf_config(text):
  """TF_CONFIG's JSON -> Cluster, or None when it names no cluster. One-line UserErrors."""
  if text is None or not text.strip():
    return None
  try:
    config = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f'TF_CONFIG: not valid JSON ({e})') from None
  if not isinstance(config, dict):
    raise UserError(f'TF_CONFIG: must be a JSON object, got {type(config).__name__}')
  cluster = config.get('cluster') or {}
  if not isinstance(cluster, dict):
    raise UserError('TF_CONFIG: "cluster" must be an object of job name -> list of addresses')
  if not cluster:
    return None
  jobs = {}
  for job, addresses in cluster.items():
    if job in ('ps', 'evaluator', 'master'):
      raise UserError(f'TF_CONFIG: job "{job}" is not supported: training is synchronous '
                      'data-parallel (MultiWorkerMirroredStrategy) over "chief" and "worker" '
                      'tasks only')
    if job not in ('chief', 'worker'):
      raise UserError(f'TF_CONFIG: unknown job "{job}"; expected "chief" and/or "worker"')
    if isinstance(addresses, dict):  # TF also accepts {index: address}
      addresses = list(addresses.values())
    if not isinstance(addresses, list) or not addresses:
      raise UserError(f'TF_CONFIG: job "{job}" must list at least one address')
    jobs[job] = len(addresses)
  if jobs.get('chief', 0) > 1:
    raise UserError(f'TF_CONFIG: at most one "chief" task, got {jobs["chief"]}')
  task = config.get('task') or {}
  task_type, task_index = task.get('type'), task.get('index', 0)
  if task_type not in jobs:
    raise UserError(f'TF_CONFIG: "task" must name this process\'s job among {sorted(jobs)}, '
                    f'got {task_type!r}')
  if not isinstance(task_index, int) or isinstance(task_index, bool) or not (
      0 <= task_index < jobs[task_type]):
    raise UserError(f'TF_CONFIG: task index {task_index!r} out of range for job "{task_type}" '
                    f'({jobs[task_type]} task(s))')
  return Cluster(jobs.get('chief', 0), jobs.get('worker', 0), task_type, task_index)


@dataclasses.dataclass(frozen=True)
class StrategyChoice:
  """What `choose_strategy` decided; `build()` makes the tf.distribute.Strategy."""
  kind: str  # KIND_*
  devices: tuple  # the local devices the local replicas run on
  gpus: tuple  # the local GPUs as given (names for the log)
  cluster: Cluster = None  # multi-worker only

  @property
  def num_replicas(self):
    return len(self.devices) * (self.cluster.num_workers if self.cluster else 1)

  @property
  def is_chief(self):
    return self.cluster is None or self.cluster.is_chief

  def description(self):
    if self.kind == KIND_DEFAULT:
      return 'default (one replica on /cpu:0)'
    if self.kind == KIND_ONE_DEVICE:
      return f'OneDeviceStrategy({self.devices[0]})'
    if self.kind == KIND_MIRRORED:
      return f'MirroredStrategy({", ".join(self.devices)})'
    per_worker = (f'{len(self.devices)} GPU{"s" if len(self.devices) > 1 else ""}' if self.gpus
                  else 'the CPU')
    return (f'MultiWorkerMirroredStrategy({self.cluster.num_workers} workers x {per_worker} = '
            f'{self.num_replicas} replicas; this process: {self.cluster.role()})')

  def build(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if self.kind == KIND_DEFAULT:
      return tf.distribute.get_strategy()
    if self.kind == KIND_ONE_DEVICE:
      return tf.distribute.OneDeviceStrategy(self.devices[0])
    if self.kind == KIND_MIRRORED:
      return tf.distribute.MirroredStrategy(list(self.devices))
    # Reads TF_CONFIG itself; it must be built before any other TF op of the process runs
    # (`this_process` is called first by `entropy-coder train` and by run_fn).
    return tf.distribute.MultiWorkerMirroredStrategy()


def choose_strategy(gpus, tf_config=None):
  """The strategy for these local GPUs (a list of names, possibly empty) and TF_CONFIG
  (its JSON text, a parsed Cluster, or None). Pure: no TensorFlow, no environment."""
  gpus = tuple(gpus)
  cluster = tf_config if isinstance(tf_config, Cluster) or tf_config is None else (
      parse_tf_config(tf_config))
  local = tuple(f'/gpu:{i}' for i in range(len(gpus))) or ('/cpu:0',)
  if cluster is not None and cluster.num_workers > 1:
    return StrategyChoice(KIND_MULTI_WORKER, local, gpus, cluster)
  if not gpus:
    return StrategyChoice(KIND_DEFAULT, local, gpus)
  if len(gpus) == 1:
    return StrategyChoice(KIND_ONE_DEVICE, local, gpus)
  return StrategyChoice(KIND_MIRRORED, local, gpus)


def use_xla(choice, xla=None):
  """XLA on GPU replicas unless turned off; off on CPU unless turned on."""
  if xla is not None:
    return bool(xla)
  return bool(choice.gpus)


def devices_text(gpus, cuda_libraries=None):
  """'1 GPU (NVIDIA A100-SXM4-40GB)', or why there is none when that is known."""
  if gpus:
    count = f'{len(gpus)} GPU{"s" if len(gpus) > 1 else ""}'
    return f'{count} ({", ".join(gpus)})'
  if cuda_libraries is False:
    return 'CPU only (no GPU visible; CUDA libraries not installed: make install GPU=1)'
  return 'CPU only (no GPU visible)'


def log_line(choice, xla, cuda_libraries=None):
  """The one line the Trainer logs, e.g.
  `devices: 1 GPU (NVIDIA A100-SXM4-40GB); strategy: OneDeviceStrategy(/gpu:0); XLA on`."""
  return (f'devices: {devices_text(choice.gpus, cuda_libraries)}; '
          f'strategy: {choice.description()}; XLA {"on" if xla else "off"}')


# TensorFlow's Linux wheel is built with CUDA; `tensorflow[and-cuda]` adds the CUDA 12 runtime
# libraries as these wheels (setup.py extra `gpu`, `make install GPU=1`).
CUDA_LIBRARY_WHEEL = 'nvidia-cudnn-cu12'


def cuda_libraries_installed():
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  try:
    metadata.version(CUDA_LIBRARY_WHEEL)
    return True
  except metadata.PackageNotFoundError:
    return False


def local_gpus():
  """Names of this machine's GPUs ('NVIDIA A100-SXM4-40GB', ...), without initialising the TF
  runtime (physical devices only), so a MultiWorkerMirroredStrategy can still be built after."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  names = []
  for device in tf.config.list_physical_devices('GPU'):
    try:
      details = tf.config.experimental.get_device_details(device)
    except Exception:  # pylint: disable=broad-except
      details = {}
    names.append(details.get('device_name') or device.name)
  return names


@dataclasses.dataclass
class Placement:
  strategy: object  # tf.distribute.Strategy
  choice: StrategyChoice
  xla: bool
  line: str


_PLACEMENTS = {}


def this_process(xla=None):
  """The placement of this process's training: its real GPUs and TF_CONFIG. The strategy is
  built once per process (a MultiWorkerMirroredStrategy cannot be built twice) and must come
  before any other TF op when TF_CONFIG names a cluster."""
  gpus = tuple(local_gpus())
  tf_config = os.environ.get('TF_CONFIG', '')
  key = (gpus, tf_config)
  if key not in _PLACEMENTS:
    choice = choose_strategy(gpus, tf_config)
    _PLACEMENTS[key] = (choice, choice.build())
  choice, strategy = _PLACEMENTS[key]
  on = use_xla(choice, xla)
  return Placement(strategy, choice, on, log_line(choice, on, cuda_libraries_installed()))


def worker_devices(strategy):
  """The devices of this worker's replicas ('/job:localhost/replica:0/task:0/device:CPU:0')."""
  try:
    return tuple(strategy.extended.worker_devices)
  except RuntimeError:  # the default strategy: one replica, TF's default placement
    return ('default placement',)


def describe_given(strategy, xla):
  """The log line for a strategy built by the caller (tests, notebooks)."""
  return (f'devices: {", ".join(worker_devices(strategy))}; strategy: '
          f'{type(strategy).__name__} (given); XLA {"on" if xla else "off"}')


def cluster_of(strategy):
  """The Cluster of a MultiWorkerMirroredStrategy in multi-worker mode, else None."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not getattr(resolver, 'task_type', None):
    return None
  spec = resolver.cluster_spec().as_dict()
  workers = spec.get('worker', [])
  chiefs = spec.get('chief', [])
  cluster = Cluster(len(chiefs), len(workers), resolver.task_type, int(resolver.task_id or 0))
  return cluster if cluster.num_workers > 1 else None


class WriteDirs:
  """Where this process writes: the real directory on the chief, a fresh temporary one
  elsewhere (`temporary(target)` yields a path and removes it afterwards)."""

  def __init__(self, cluster):
    self.cluster = cluster
    self.removed = []  # temporary directories made and removed (for logs and tests)

  @property
  def is_chief(self):
    return self.cluster is None or self.cluster.is_chief

  def temporary(self):
    prefix = f'entropy-coder-{self.cluster.task_type}{self.cluster.task_index}-'
    return tempfile.mkdtemp(prefix=prefix)

  def remove(self, path):
    shutil.rmtree(path, ignore_errors=True)
    self.removed.append(path)
