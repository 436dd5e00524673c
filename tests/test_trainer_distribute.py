"""Devices, strategies and machines: the pure strategy choice on simulated device lists, the
multi-replica path on 2 logical CPUs, and real multi-worker training (two processes on
127.0.0.1) against one process with the same global batch.

No GPU exists where these tests were written and run: the GPU cases are simulated device lists
given to `choose_strategy`, never a measurement.
"""
import glob
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from helpers import write_examples_dir, write_tfrecord
from entropy_coder.errors import UserError
from entropy_coder.trainer import distribute

A100 = 'NVIDIA A100-SXM4-40GB'


def _tf_config(workers, task_type, index, chief=None):
  cluster = {'worker': workers}
  if chief:
    cluster['chief'] = chief
  return json.dumps({'cluster': cluster, 'task': {'type': task_type, 'index': index}})


def test_strategy_for_no_gpu_one_gpu_and_several_gpus():
  cpu = distribute.choose_strategy([])
  assert (cpu.kind, cpu.devices, cpu.num_replicas, cpu.is_chief) == ('default', ('/cpu:0',), 1, True)
  assert not distribute.use_xla(cpu)
  assert distribute.log_line(cpu, False) == (
      'devices: CPU only (no GPU visible); strategy: default (one replica on /cpu:0); XLA off')
  assert 'make install GPU=1' in distribute.log_line(cpu, False, cuda_libraries=False)

  one = distribute.choose_strategy([A100])
  assert (one.kind, one.devices, one.num_replicas) == ('one_device', ('/gpu:0',), 1)
  assert distribute.use_xla(one)
  assert distribute.log_line(one, distribute.use_xla(one)) == (
      f'devices: 1 GPU ({A100}); strategy: OneDeviceStrategy(/gpu:0); XLA on')

  four = distribute.choose_strategy([A100] * 4)
  assert (four.kind, four.num_replicas) == ('mirrored', 4)
  assert four.devices == ('/gpu:0', '/gpu:1', '/gpu:2', '/gpu:3')
  assert distribute.log_line(four, True) == (
      f'devices: 4 GPUs ({", ".join([A100] * 4)}); '
      'strategy: MirroredStrategy(/gpu:0, /gpu:1, /gpu:2, /gpu:3); XLA on')

  # XLA: on by default on GPU only; the flag wins either way.
  assert not distribute.use_xla(four, xla=False)
  assert distribute.use_xla(cpu, xla=True)


def test_strategy_under_tf_config():
  workers = ['10.0.0.1:2222', '10.0.0.2:2222']  # never contacted: the choice is pure
  # A cluster of one worker (Vertex sets TF_CONFIG for a single machine too) is the local case.
  alone = distribute.choose_strategy([A100], _tf_config(workers[:1], 'worker', 0))
  assert alone.kind == 'one_device' and alone.cluster is None
  assert distribute.choose_strategy([], '').kind == 'default'
  assert distribute.choose_strategy([], '{}').kind == 'default'

  second = distribute.choose_strategy([], _tf_config(workers, 'worker', 1))
  assert (second.kind, second.num_replicas, second.is_chief) == ('multi_worker', 2, False)
  assert second.description() == ('MultiWorkerMirroredStrategy(2 workers x the CPU = 2 replicas; '
                                   'this process: worker 1, not the chief)')
  assert distribute.choose_strategy([], _tf_config(workers, 'worker', 0)).is_chief

  # Vertex / a TFJob with a Chief replica: the chief is chief and worker 0 is not.
  gpus = [A100, A100]
  chief = distribute.choose_strategy(gpus, _tf_config(workers, 'chief', 0, chief=['10.0.0.9:2222']))
  assert (chief.kind, chief.num_replicas, chief.is_chief) == ('multi_worker', 6, True)
  assert chief.cluster.worker_index == 0
  worker0 = distribute.choose_strategy(gpus, _tf_config(workers, 'worker', 0, chief=['c:1']))
  assert not worker0.is_chief and worker0.cluster.worker_index == 1
  assert distribute.log_line(worker0, distribute.use_xla(worker0)) == (
      f'devices: 2 GPUs ({A100}, {A100}); strategy: MultiWorkerMirroredStrategy(3 workers x '
      '2 GPUs = 6 replicas; this process: worker 0, not the chief); XLA on')


@pytest.mark.parametrize('tf_config, message', [
    ('{not json', 'not valid JSON'),
    ('[1]', 'must be a JSON object'),
    (json.dumps({'cluster': {'worker': ['a:1', 'b:1'], 'ps': ['c:1']},
                 'task': {'type': 'worker', 'index': 0}}), 'job "ps" is not supported'),
    (json.dumps({'cluster': {'master': ['a:1']}, 'task': {'type': 'master', 'index': 0}}),
     'job "master" is not supported'),
    (json.dumps({'cluster': {'worker': ['a:1', 'b:1']}}), '"task" must name'),
    (json.dumps({'cluster': {'worker': ['a:1', 'b:1']}, 'task': {'type': 'worker', 'index': 2}}),
     'task index 2 out of range'),
    (json.dumps({'cluster': {'chief': ['a:1', 'b:1']}, 'task': {'type': 'chief', 'index': 0}}),
     'at most one "chief"'),
])
def test_bad_tf_config_is_a_one_line_error(tf_config, message):
  with pytest.raises(UserError) as error:
    distribute.choose_strategy([], tf_config)
  assert message in str(error.value) and str(error.value).startswith('TF_CONFIG: ')
  assert '\n' not in str(error.value)


_LOGICAL_CPUS_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from entropy_coder.errors import UserError
    from entropy_coder.trainer import train_loop
    from entropy_coder.trainer.config import ModelConfig, TrainConfig
    root, out = sys.argv[1], sys.argv[2]
    model, train = ModelConfig(2, 2), TrainConfig(8, 0.01, 0.9, 1000)
    runs = {'one': (tf.distribute.OneDeviceStrategy('/cpu:0'), False),
            'two': (tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']), False),
            'two_xla': (tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']), True)}
    results = {}
    for name, (strategy, xla) in runs.items():
      lines = []
      trainer = train_loop.Trainer(model, train, os.path.join(out, name), strategy=strategy,
                                   seed=2, xla=xla)
      result = trainer.fit(os.path.join(root, 'Split-train', '*'), 4, log_every=1,
                           progress=lines.append)
      results[name] = {'replicas': strategy.num_replicas_in_sync, 'steps': result.steps,
                       'log': lines[0], 'loss': result.train_code_length,
                       'weights': {k: v.ravel().tolist()
                                   for k, v in trainer.model.named_weights().items()}}
    try:
      train_loop.Trainer(model, TrainConfig(7, 0.01, 0.9, 1000), os.path.join(out, 'odd'),
                         strategy=runs['two'][0])
      results['odd_batch'] = 'no error'
    except UserError as e:
      results['odd_batch'] = str(e)
    print(json.dumps(results))
''')


def test_mirrored_strategy_on_two_logical_cpus_trains_like_one_device(tmp_path):
  """fit() end to end (the data split of code_dataset batches, the all-reduce, and the XLA
  step inside MirroredStrategy) on 2 logical CPU devices, against one device; a global batch
  that does not split evenly is refused."""
  from entropy_coder.data_gen.synthetic import generate_codes  # pylint: disable=g-import-not-at-top
  codes = generate_codes(3, 0, 40, shape=(8, 8, 4))
  root = write_examples_dir(str(tmp_path / 'examples'), codes[:32], codes[32:])
  run = subprocess.run([sys.executable, '-c', _LOGICAL_CPUS_SCRIPT, root, str(tmp_path)],
                       capture_output=True, text=True, timeout=240, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads(run.stdout.strip().splitlines()[-1])
  one = results['one']
  assert one['replicas'] == 1 and results['two']['replicas'] == 2
  assert 'MirroredStrategy (given); XLA on' in results['two_xla']['log']
  assert 'batch_size 7 must be a multiple of the 2 replicas' in results['odd_batch']
  for name in ('two', 'two_xla'):
    assert results[name]['steps'] == 4
    assert results[name]['loss'] == pytest.approx(one['loss'], rel=1e-5)
    for key, value in one['weights'].items():
      np.testing.assert_allclose(results[name]['weights'][key], value, rtol=1e-5, atol=2e-6,
                                 err_msg=f'{name} {key}')


# ---------------------------------------------------------------------------------------------
# Two worker processes on 127.0.0.1 against one process.

STEPS = 6
GLOBAL_BATCH = 8  # each of the 2 workers trains on 4 codes of every global batch
MODEL_CONFIG = {'layer_depth': 2, 'layer_count': 2}
TRAIN_CONFIG = {'batch_size': GLOBAL_BATCH, 'learning_rate': 0.01, 'decay_rate': 0.9,
                'samples_per_decay': 1000}
WORKER_TIMEOUT = 240  # seconds, per worker process
# Weights after STEPS steps, two workers vs one process. The two runs differ only in float32
# summation order: each worker sums the gradient of its half batch and the all-reduce adds the
# two, where one process sums the whole batch at once (relative error ~1e-7 in each gradient).
# Adam (epsilon 1e-3) turns a gradient error dg into an update error of at most lr * dg / eps,
# so ~1e-6 per step in the worst case; measured: 3e-8 (weights of magnitude up to ~1).
WEIGHT_ATOL, WEIGHT_RTOL = 2e-6, 1e-5


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(('127.0.0.1', 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _losses(train_dir):
  """Per-step training loss from the TensorBoard events the (chief) Trainer wrote."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  losses = {}
  for path in glob.glob(os.path.join(train_dir, 'logs', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'loss':
          losses[event.step] = float(tf.make_ndarray(value.tensor))
  return [losses[step] for step in sorted(losses)]


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


@pytest.fixture(scope='module')
def cluster_data(tmp_path_factory):
  """Examples (8x8x4 codes), configs, and the single-process run the workers must match."""
  from entropy_coder.data_gen.synthetic import generate_codes  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import config as config_lib, train_loop  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.mktemp('cluster')
  codes = generate_codes(5, 0, 80, shape=(8, 8, 4))
  root = str(base / 'examples')
  # 4 train files, as an ExampleGen writes several: sharding by FILE (TF's AUTO policy) would
  # give each worker its own files and a different training than one process's.
  for shard in range(4):
    write_tfrecord(os.path.join(root, 'Split-train', f'data-{shard:05d}-of-00004.gz'),
                   codes[shard * 16:(shard + 1) * 16])
  write_tfrecord(os.path.join(root, 'Split-eval', 'data.gz'), codes[64:])
  (base / 'model_config.json').write_text(json.dumps(MODEL_CONFIG))
  (base / 'train_config.json').write_text(json.dumps(TRAIN_CONFIG))
  single_dir = str(base / 'single')
  trainer = train_loop.Trainer(config_lib.model_config_from_dict(MODEL_CONFIG),
                               config_lib.train_config_from_dict(TRAIN_CONFIG), single_dir)
  trainer.fit(os.path.join(root, 'Split-train', '*'), STEPS,
              eval_patterns=os.path.join(root, 'Split-eval', '*'), log_every=1,
              progress=lambda line: None)
  trainer.export(os.path.join(single_dir, 'model'))
  return base, root, single_dir


_RUN_FN_WORKER = textwrap.dedent('''
    import json, os, sys
    from tfx.components.trainer.fn_args_utils import FnArgs
    from entropy_coder.trainer.run_fn import run_fn
    root, out, steps, model_config, train_config = sys.argv[1:]
    fn_args = FnArgs(train_files=[os.path.join(root, 'Split-train', '*')],
                     eval_files=[os.path.join(root, 'Split-eval', '*')], train_steps=int(steps),
                     eval_steps=None, serving_model_dir=os.path.join(out, 'Format-Serving'),
                     model_run_dir=os.path.join(out, 'run'),
                     custom_config={'model_config': json.loads(model_config),
                                    'train_config': json.loads(train_config), 'log_every': 1})
    result = run_fn(fn_args)
    # What TFX's GenericExecutor checks on every worker right after run_fn returns:
    assert os.path.exists(fn_args.serving_model_dir), 'no export when run_fn returned'
    print(json.dumps({'steps': result.steps}))
''')


def _run_two_workers(commands, tmp_path):
  """Starts one process per command with its TF_CONFIG, waits at most WORKER_TIMEOUT seconds
  for all of them, and kills every one still running on failure or timeout. Output goes to
  files (a full pipe would stall a worker, and with it the other). -> [(stdout, stderr)]."""
  ports = _free_ports(len(commands))
  workers = [f'127.0.0.1:{port}' for port in ports]
  processes, logs = [], []
  deadline = time.monotonic() + WORKER_TIMEOUT
  try:
    for index, command in enumerate(commands):
      temporary = tmp_path / f'tmp{index}'  # the worker's TMPDIR: must end up empty
      temporary.mkdir()
      env = dict(os.environ, TF_CONFIG=_tf_config(workers, 'worker', index),
                 TMPDIR=str(temporary), TF_CPP_MIN_LOG_LEVEL='3')
      out, err = tmp_path / f'worker{index}.out', tmp_path / f'worker{index}.err'
      logs.append((out, err))
      with open(out, 'w') as stdout, open(err, 'w') as stderr:
        processes.append(subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr))
    for process in processes:
      process.wait(timeout=max(deadline - time.monotonic(), 1))
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  outputs = [(out.read_text(), err.read_text()) for out, err in logs]
  for index, (process, (_, err)) in enumerate(zip(processes, outputs)):
    assert process.returncode == 0, f'worker {index} exited {process.returncode}:\n{err[-3000:]}'
  return outputs


@pytest.mark.e2e
def test_two_workers_train_like_one_process_and_only_the_chief_writes(cluster_data, tmp_path):
  """`entropy-coder train` as 2 workers (TF_CONFIG, MultiWorkerMirroredStrategy over gRPC on
  127.0.0.1), global batch 8 = 4 per worker, against one process with batch 8."""
  base, root, single_dir = cluster_data
  dirs = [str(tmp_path / 'chief'), str(tmp_path / 'worker1')]
  commands = [[sys.executable, '-m', 'entropy_coder.cli', 'train', '--model-config',
               str(base / 'model_config.json'), '--train-config', str(base / 'train_config.json'),
               '--examples', root, '--train-dir', train_dir, '--steps', str(STEPS),
               '--log-every', '1'] for train_dir in dirs]
  (chief_out, chief_err), (worker_out, worker_err) = _run_two_workers(commands, tmp_path)

  assert ('strategy: MultiWorkerMirroredStrategy(2 workers x the CPU = 2 replicas; this '
          'process: worker 0, the chief); XLA off') in chief_err
  assert 'this process: worker 1, not the chief' in worker_err
  for err in (chief_err, worker_err):  # the same steps, on every worker
    assert f'training from step 0 to {STEPS}: batch {GLOBAL_BATCH}, code shape [8, 8, 4], 2 replica(s)' in err
    assert f'step {STEPS}/{STEPS}' in err
  assert f'model exported to {dirs[0]}/model' in chief_out
  # It saved as the chief did (1 checkpoint, 1 export), into temporary dirs now removed.
  assert ('the chief wrote the checkpoints and the model (2 temporary save(s) of this worker '
          'removed)') in worker_out

  # The same training: per-step losses and final weights of the single process.
  np.testing.assert_allclose(_losses(dirs[0]), _losses(single_dir), rtol=1e-5)
  assert len(_losses(dirs[0])) == STEPS
  single = np.load(os.path.join(single_dir, 'model', 'weights.npz'))
  chief = np.load(os.path.join(dirs[0], 'model', 'weights.npz'))
  assert sorted(chief) == sorted(single)
  for name in single:
    np.testing.assert_allclose(chief[name], single[name], rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL,
                               err_msg=name)
  assert max(np.abs(single[n]).max() for n in single) > 0.1  # they trained (weights moved)

  # Only the chief writes: its train dir has what one process writes; the other worker's is
  # empty and its temporary checkpoints and export are gone.
  expected = [f for f in _files(single_dir) if not f.startswith('logs/')] + ['logs']
  chief_files = [f for f in _files(dirs[0]) if not f.startswith('logs/')] + ['logs']
  assert 'checkpoints/ckpt-6.index' in chief_files and 'model/saved_model.pb' in chief_files
  assert set(chief_files) == set(expected) | {'model_config.json', 'train_config.json'}
  assert _files(dirs[1]) == []
  assert not os.listdir(tmp_path / 'tmp1'), os.listdir(tmp_path / 'tmp1')


@pytest.mark.e2e
def test_two_workers_through_the_tfx_run_fn(cluster_data, tmp_path):
  """The TFX Trainer's run_fn on 2 workers with the same fn_args (shared storage, as TFX gives
  every worker): the same weights as one process, and no worker returns before the chief's
  export exists (TFX's executor checks serving_model_dir right after run_fn)."""
  _, root, single_dir = cluster_data
  out = str(tmp_path / 'trainer')
  command = [sys.executable, '-c', _RUN_FN_WORKER, root, out, str(STEPS),
             json.dumps(MODEL_CONFIG), json.dumps(TRAIN_CONFIG)]
  outputs = _run_two_workers([command, command], tmp_path)
  for stdout, _ in outputs:
    assert json.loads(stdout.strip().splitlines()[-1]) == {'steps': STEPS}
  single = np.load(os.path.join(single_dir, 'model', 'weights.npz'))
  exported = np.load(os.path.join(out, 'Format-Serving', 'weights.npz'))
  for name in single:
    np.testing.assert_allclose(exported[name], single[name], rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL,
                               err_msg=name)
  assert sorted(os.listdir(os.path.join(out, 'run', 'checkpoints'))) == [
      'checkpoint', f'ckpt-{STEPS}.data-00000-of-00001', f'ckpt-{STEPS}.index']
  assert not os.listdir(tmp_path / 'tmp1')
