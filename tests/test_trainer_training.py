"""Real training: learning, resumption, export and reload, the multi-replica path, the CLI."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from helpers import REPO, write_examples_dir
from entropy_coder import cli, codes_format, model_files
from entropy_coder.errors import UserError
from entropy_coder.data_gen.synthetic import generate_codes
from entropy_coder.trainer import export, train_loop
from entropy_coder.trainer.config import ModelConfig, TrainConfig

SHAPE = (12, 12, 4)
MODEL = ModelConfig(layer_depth=2, layer_count=4)
TRAIN = TrainConfig(batch_size=16, learning_rate=0.1, decay_rate=0.9, samples_per_decay=100000)
CLI = [sys.executable, '-m', 'entropy_coder.cli']


@pytest.fixture(scope='module')
def examples(tmp_path_factory):
  codes = generate_codes(11, 0, 640, shape=SHAPE)
  root = str(tmp_path_factory.mktemp('examples'))
  return write_examples_dir(root, codes[:512], codes[512:]), codes[512:]


@pytest.fixture(scope='module')
def trained(examples, tmp_path_factory):
  root, _ = examples
  train_dir = str(tmp_path_factory.mktemp('train'))
  trainer = train_loop.Trainer(MODEL, TRAIN, train_dir, seed=1)
  untrained, _ = trainer.evaluate(os.path.join(root, 'Split-eval', '*'))
  result = trainer.fit(os.path.join(root, 'Split-train', '*'), 300,
                       eval_patterns=os.path.join(root, 'Split-eval', '*'), log_every=100)
  return trainer, untrained, result, train_dir


def test_training_takes_held_out_code_length_clearly_below_one_bit(trained):
  _, untrained, result, _ = trained
  assert untrained > 0.97
  assert result.steps == 300
  assert result.eval_code_length < 0.93, result
  assert len(result.eval_per_layer) == 2


def test_training_resumes_from_the_latest_checkpoint(trained, examples):
  trainer, _, _, train_dir = trained
  root, _ = examples
  # Checkpoint keys are the weights' names (TF escapes '/' as '.S'), not creation order.
  keys = {name for name, _ in tf.train.list_variables(trainer.manager.latest_checkpoint)}
  assert 'model/layer1.Sbrnn.Srow_lstm.Shidden_conv.Skernel/.ATTRIBUTES/VARIABLE_VALUE' in keys
  restarted = train_loop.Trainer(MODEL, TRAIN, train_dir, seed=1)
  assert restarted.restore() == 300
  for name, value in trainer.model.named_weights().items():
    np.testing.assert_array_equal(restarted.model.named_weights()[name], value)
  result = restarted.fit(os.path.join(root, 'Split-train', '*'), 310, log_every=5)
  assert result.steps == 310


def test_saved_model_reload_matches_the_in_memory_model(trained, examples, tmp_path):
  trainer, _, _, _ = trained
  _, eval_codes = examples
  model_dir = export.export_model(trainer.model, str(tmp_path / 'model'))
  loaded = tf.saved_model.load(model_dir)
  batch = eval_codes[:5]
  expected = trainer.model(2.0 * batch.astype(np.float32) - 1.0).numpy()
  serialized = tf.constant([codes_format.encode_example(code) for code in batch])
  outputs = loaded.signatures['serving_default'](examples=serialized)
  np.testing.assert_allclose(outputs['probs'].numpy(), expected.reshape(5, -1), atol=1e-6)
  labels = loaded.signatures['transformed_labels'](examples=serialized)['bits'].numpy()
  np.testing.assert_array_equal(labels, batch.reshape(5, -1))
  lengths = -(labels * np.log2(expected.reshape(5, -1)) + (1 - labels) * np.log2(1 - expected.reshape(5, -1)))
  np.testing.assert_allclose(outputs['code_length_bits'].numpy(), lengths.sum(1), rtol=1e-5)
  np.testing.assert_array_equal(outputs['num_bits'].numpy(), np.full(5, np.prod(SHAPE)))
  per_layer = outputs['layer_code_length_bits'].numpy()
  assert per_layer.shape == (5, MODEL.layer_count) and not per_layer[:, 2:].any()
  np.testing.assert_allclose(per_layer[:, :2].sum(1), lengths.sum(1), rtol=1e-5)
  dense = loaded.signatures['serving_dense'](codes=tf.constant(batch.astype(np.float32)))
  np.testing.assert_allclose(dense['probs'].numpy(), expected, atol=1e-6)
  files = model_files.read_model_files(model_dir)
  assert files.model_config['layer_depth'] == 2
  for name, value in trainer.model.named_weights().items():
    np.testing.assert_array_equal(files.weights[name], value)


_REPLICA_SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from entropy_coder.trainer import train_loop
    from entropy_coder.trainer.config import ModelConfig, TrainConfig
    model, train = ModelConfig(2, 4), TrainConfig(8, 0.1, 0.9, 1000)
    batch = tf.constant(np.random.default_rng(0).integers(0, 2, (8, 9, 10, 4)).astype(np.float32))
    results = {}
    for name, strategy in (('one', tf.distribute.OneDeviceStrategy('/cpu:0')),
                           ('two', tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))):
      trainer = train_loop.Trainer(model, train, sys.argv[1] + name, strategy=strategy, seed=3)
      data = strategy.experimental_distribute_dataset(
          tf.data.Dataset.from_tensors(batch).repeat(2))
      losses = [float(trainer.train_step(b)) for b in data]
      weights = trainer.model.named_weights()
      results[name] = {'replicas': strategy.num_replicas_in_sync, 'losses': losses,
                       'kernel': weights['layer0/brnn/out1x1_b/kernel'].ravel().tolist()}
    print(json.dumps(results))
''')


def test_two_replicas_give_the_same_loss_and_update_as_one(tmp_path):
  run = subprocess.run([sys.executable, '-c', _REPLICA_SCRIPT, str(tmp_path) + '/'],
                       capture_output=True, text=True, timeout=300, check=True)
  results = json.loads(run.stdout.strip().splitlines()[-1])
  assert (results['one']['replicas'], results['two']['replicas']) == (1, 2)
  np.testing.assert_allclose(results['two']['losses'], results['one']['losses'], rtol=1e-5)
  np.testing.assert_allclose(results['two']['kernel'], results['one']['kernel'], rtol=1e-4, atol=1e-6)
  assert results['one']['losses'][1] != results['one']['losses'][0]  # the first step trained


def test_cli_train_then_code_length_on_a_sample(examples, tmp_path, capsys):
  """In-process through cli.main (the cross-process CLI path is covered by the codec tests)."""
  root, _ = examples
  configs = os.path.join(REPO, 'configs', 'demo')
  train_dir = str(tmp_path / 'run')
  assert cli.main(['train', '--model-config', os.path.join(configs, 'model_config.json'),
                   '--train-config', os.path.join(configs, 'train_config.json'),
                   '--examples', root, '--train-dir', train_dir, '--steps', '20',
                   '--log-every', '10']) == 0
  assert 'step 20/20' in capsys.readouterr().err
  sample = str(tmp_path / 'sample.npz')
  assert cli.main(['sample', '--output', sample, '--seed', '4']) == 0
  plot = str(tmp_path / 'layers.png')
  capsys.readouterr()
  assert cli.main(['code-length', '--model', os.path.join(train_dir, 'model'), '--input', sample,
                   '--json', '--plot', plot]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result['samples'] == 1 and result['coded_bits'] == 31 * 36 * 8
  assert 0.5 < result['bits_per_bit'] < 1.2
  assert result['compression_ratio'] == pytest.approx(1 / result['bits_per_bit'])
  assert len(result['per_layer']) == 4
  assert os.path.getsize(plot) > 1000


@pytest.mark.parametrize('case', ['missing_key', 'depth_does_not_fit', 'non_binary_npz', 'not_a_model'])
def test_cli_bad_inputs_give_one_line_errors(case, examples, tmp_path, trained, capsys):
  trainer, _, _, _ = trained
  model_dir = str(tmp_path / 'model')
  export.export_model(trainer.model, model_dir)  # layer_count 4, layer_depth 2
  bad_config = tmp_path / 'model_config.json'
  bad_config.write_text('{"layer_depth": 2}')
  deep = str(tmp_path / 'deep.npz')
  codes_format.write_npz(deep, np.zeros((4, 4, 10), np.uint8), layer_depth=2)  # 5 layers > 4
  nonbinary = str(tmp_path / 'nonbinary.npz')
  np.savez(nonbinary, shape=np.array([1, 1, 2, 2, 2]), codes=np.array([0, 2, 1, 1, 0, 1, 1, 0]))
  args = {
      'missing_key': ['train', '--model-config', str(bad_config), '--train-config',
                      os.path.join(REPO, 'configs', 'demo', 'train_config.json'),
                      '--examples', examples[0], '--train-dir', str(tmp_path / 't')],
      'depth_does_not_fit': ['code-length', '--model', model_dir, '--input', deep],
      'non_binary_npz': ['code-length', '--model', model_dir, '--input', nonbinary],
      'not_a_model': ['code-length', '--model', str(tmp_path), '--input', deep],
  }[case]
  assert cli.main(args) == 2
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and 'error' in lines[0] and 'Traceback' not in err, err
  expected = {'missing_key': str(bad_config), 'depth_does_not_fit': deep,
              'non_binary_npz': nonbinary, 'not_a_model': str(tmp_path)}[case]
  assert expected in lines[0]


def test_run_fn_trains_exports_logs_and_resumes(examples, tmp_path):
  from tfx.components.trainer.fn_args_utils import FnArgs  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer.run_fn import run_fn  # pylint: disable=g-import-not-at-top
  root, _ = examples
  custom = {'model_config': MODEL.to_dict(), 'train_config': TRAIN.to_dict(),
            'checkpoint_dir': str(tmp_path / 'checkpoints'), 'log_every': 2}

  def fn_args(steps, name):
    return FnArgs(train_files=[os.path.join(root, 'Split-train', '*')],
                  eval_files=[os.path.join(root, 'Split-eval', '*')], train_steps=steps,
                  eval_steps=None, serving_model_dir=str(tmp_path / name / 'Format-Serving'),
                  model_run_dir=str(tmp_path / name / 'run'), custom_config=custom)

  first = run_fn(fn_args(4, 'first'))
  assert first.steps == 4
  assert tf.io.gfile.glob(str(tmp_path / 'checkpoints' / 'logs' / 'events.out.tfevents.*'))
  second = run_fn(fn_args(6, 'second'))  # a restarted Trainer resumes at step 4
  assert second.steps == 6
  exported = model_files.read_model_files(str(tmp_path / 'second'))  # the Trainer artifact URI
  assert exported.model_config == {**MODEL.to_dict()}
  assert tf.saved_model.load(str(tmp_path / 'second' / 'Format-Serving')).signatures['serving_default']


def test_run_fn_tracks_the_eval_split_and_exports_the_best_evaluation(examples, tmp_path):
  """custom_config eval_every (the pipeline sets it): the eval split every N steps, the export
  holds the weights of the lowest evaluation, and its train summary names that step; a bad value
  is refused before training."""
  from tfx.components.trainer.fn_args_utils import FnArgs  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer.run_fn import run_fn  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer.train_loop import TRAIN_SUMMARY_FILE  # pylint: disable=g-import-not-at-top
  root, _ = examples

  def fn_args(custom, name):
    return FnArgs(train_files=[os.path.join(root, 'Split-train', '*')],
                  eval_files=[os.path.join(root, 'Split-eval', '*')], train_steps=6,
                  eval_steps=None, serving_model_dir=str(tmp_path / name / 'Format-Serving'),
                  model_run_dir=str(tmp_path / name / 'run'), custom_config=custom)

  custom = {'model_config': MODEL.to_dict(), 'train_config': TRAIN.to_dict(), 'log_every': 2}
  result = run_fn(fn_args(dict(custom, eval_every=2), 'tracked'))
  summary = json.loads((tmp_path / 'tracked' / 'Format-Serving' / TRAIN_SUMMARY_FILE).read_text())
  assert result.steps == 6 and summary['exported_step'] in (2, 4, 6)
  assert summary['exported_eval_code_length'] <= summary['eval_code_length']
  for bad in (-1, 1.5, True, '3'):
    with pytest.raises(UserError, match='eval_every'):
      run_fn(fn_args(dict(custom, eval_every=bad), 'bad'))


def test_cli_trains_on_the_originals_input_config_and_float_records(tmp_path):
  from entropy_coder.trainer.train_loop import CHECKPOINT_SUBDIR  # pylint: disable=g-import-not-at-top
  codes = generate_codes(2, 0, 40, shape=(8, 8, 4))
  data = tmp_path / 'synthetic_dataset'
  import tensorflow as tf_  # pylint: disable=g-import-not-at-top,reimported
  with tf_.io.TFRecordWriter(str(data)) as writer:  # uncompressed, floats of +-1: the original
    for code in codes:
      writer.write(codes_format.encode_original_example(code))
  input_config = tmp_path / 'input_config.json'
  input_config.write_text(json.dumps({'data': str(data), 'unique_code_size': True}))
  model_config = tmp_path / 'model_config.json'
  model_config.write_text(json.dumps({'layer_depth': 2, 'layer_count': 2}))
  train_dir = tmp_path / 'run'
  assert cli.main(['train', '--model-config', str(model_config), '--train-config',
                   os.path.join(REPO, 'configs', 'synthetic', 'train_config.json'),
                   '--input-config', str(input_config), '--train-dir', str(train_dir),
                   '--steps', '3', '--log-every', '1']) == 0
  assert tf.train.latest_checkpoint(str(train_dir / CHECKPOINT_SUBDIR)).endswith('-3')
  assert json.loads((train_dir / 'model_config.json').read_text())['layer_count'] == 2


def test_a_resumed_run_continues_the_same_data_order(examples, tmp_path):
  """Stopping at step 3 and resuming to 6 ends with the weights of one run to 6."""
  root, _ = examples
  train = os.path.join(root, 'Split-train', '*')
  straight = train_loop.Trainer(MODEL, TRAIN, str(tmp_path / 'straight'), seed=4)
  straight.fit(train, 6, log_every=100)
  split = train_loop.Trainer(MODEL, TRAIN, str(tmp_path / 'split'), seed=4)
  split.fit(train, 3, log_every=100)
  resumed = train_loop.Trainer(MODEL, TRAIN, str(tmp_path / 'split'), seed=4)
  resumed.fit(train, 6, log_every=100)
  for name, value in straight.model.named_weights().items():
    np.testing.assert_allclose(resumed.model.named_weights()[name], value, rtol=1e-5, atol=1e-7)
