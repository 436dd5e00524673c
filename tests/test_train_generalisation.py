"""Training that generalises: the export takes the best evaluation's weights, the summary says
when the model overfits, and weight_decay regularises deterministically."""
import json
import os

import numpy as np
import pytest

from helpers import write_examples_dir
from entropy_coder import cli, model_files
from entropy_coder.commands import metrics
from entropy_coder.pipeline import inspect_runs
from entropy_coder.trainer import train_loop
from entropy_coder.trainer.config import (ModelConfig, TrainConfig, load_train_config,
                                          train_config_from_dict)
from entropy_coder.errors import UserError

SHAPE = (8, 8, 2)
MODEL = ModelConfig(layer_depth=1, layer_count=2)
TRAIN = dict(batch_size=8, learning_rate=0.05, decay_rate=1.0, samples_per_decay=1000)


def _biased(seed, count, p_one):
  return (np.random.default_rng(seed).random((count,) + SHAPE) < p_one).astype(np.uint8)


@pytest.fixture(scope='module')
def drifting(tmp_path_factory):
  """Train on codes of 90 % ones, evaluate on fair coins: the longer the model trains, the
  worse the eval code length gets (the untrained model's ~1 bit/bit is the best it sees)."""
  root = str(tmp_path_factory.mktemp('drifting'))
  return write_examples_dir(root, _biased(1, 64, 0.9), _biased(2, 16, 0.5))


def test_the_export_holds_the_best_evaluation_and_the_summary_says_so(drifting, tmp_path, capsys):
  model_config, train_config = tmp_path / 'model.json', tmp_path / 'train.json'
  model_config.write_text(json.dumps(MODEL.to_dict()))
  train_config.write_text(json.dumps(TRAIN))
  train_dir = str(tmp_path / 'run')
  assert cli.main(['train', '--model-config', str(model_config), '--train-config',
                   str(train_config), '--examples', drifting, '--train-dir', train_dir,
                   '--steps', '40', '--eval-every', '4', '--log-every', '4', '--xla', 'off']) == 0
  out = capsys.readouterr().out
  record = json.loads(open(os.path.join(train_dir, train_loop.BEST_RECORD_FILE)).read())
  last_eval = float(out.split(', eval ')[1].split(' ')[0])
  assert record['step'] < 40 and record['eval_code_length'] < last_eval - 0.05
  assert f'exported the weights of step {record["step"]}, the lowest eval code length' in out
  assert 'note: overfitting: eval code length' in out

  # The same beside the export, where the pipeline's summary finds it (Format-Serving of a
  # Trainer's model artifact; here the CLI's export, read the same way).
  summary = json.loads(open(os.path.join(train_dir, 'model', train_loop.TRAIN_SUMMARY_FILE)).read())
  assert summary['exported_step'] == record['step'] and summary['steps'] == 40
  assert summary['overfitting_note'].startswith('overfitting')
  model_uri = tmp_path / 'artifact'
  model_uri.mkdir()
  os.symlink(os.path.join(train_dir, 'model'), model_uri / model_files.TRAINER_SERVING_SUBDIR)
  evaluation = inspect_runs.Evaluation(1, 'COMPLETE', '', str(model_uri), None, True, {}, None,
                                       {}, [], None, None,
                                       training=inspect_runs._training_summary(str(model_uri)))
  lines = metrics.format_training(evaluation)
  assert lines[0].startswith('training    step 40: train code length') and 'step' in lines[0]
  assert lines[1].startswith('note        overfitting')
  assert metrics.format_training(inspect_runs.Evaluation(
      1, 'COMPLETE', '', str(tmp_path), None, True, {}, None, {}, [], None, None,
      training=inspect_runs._training_summary(str(tmp_path)))) == []

  # The exported model really is the best evaluation's: evaluated again, it gives its figure.
  exported = model_files.read_model_files(os.path.join(train_dir, 'model'))
  check = train_loop.Trainer(MODEL, train_config_from_dict(TRAIN), str(tmp_path / 'check'))
  check.model.set_named_weights(exported.weights)
  length, _ = check.evaluate(os.path.join(drifting, 'Split-eval', '*'))
  assert length == pytest.approx(record['eval_code_length'], abs=1e-5)

  # A resumed run remembers its best: nothing better came, so the export keeps that step.
  assert cli.main(['train', '--model-config', str(model_config), '--train-config',
                   str(train_config), '--examples', drifting, '--train-dir', train_dir,
                   '--steps', '44', '--eval-every', '4', '--log-every', '4', '--xla', 'off']) == 0
  assert f'exported the weights of step {record["step"]},' in capsys.readouterr().out


def test_overfitting_note_threshold():
  margin = train_loop.OVERFIT_MARGIN
  assert train_loop.overfitting_note(0.5, 0.5 * (1 + margin) - 1e-9) is None
  assert 'overfitting' in train_loop.overfitting_note(0.5, 0.5 * (1 + margin) + 1e-3)
  assert train_loop.overfitting_note(0.5, float('nan')) is None
  assert 'no evaluation' in train_loop.kept_step_line(None, 7, float('nan'))
  assert 'the last' in train_loop.kept_step_line(train_loop.BestEval(7, 0.4), 7, 0.4)


def _trained_weights(tmp_path, name, weight_decay, steps=6):
  trainer = train_loop.Trainer(MODEL, train_config_from_dict(dict(TRAIN, weight_decay=weight_decay)),
                               str(tmp_path / name), seed=3, xla=False)
  codes = _biased(5, 8, 0.7).astype(np.float32)
  for _ in range(steps):
    trainer.train_step(codes)
  return trainer.model.named_weights()


def _kernel_norm(weights):
  return sum(float(np.sum(np.square(v))) for k, v in weights.items() if k.endswith('kernel'))


def test_weight_decay_changes_training_deterministically(tmp_path):
  plain = _trained_weights(tmp_path, 'plain', 0.0)
  decayed = _trained_weights(tmp_path, 'decayed', 0.5)
  again = _trained_weights(tmp_path, 'again', 0.5)
  for name in decayed:
    np.testing.assert_array_equal(decayed[name], again[name])
  assert _kernel_norm(decayed) < _kernel_norm(plain)
  assert any(not np.array_equal(plain[k], decayed[k]) for k in plain if k.endswith('kernel'))


def test_weight_decay_is_checked(tmp_path):
  path = tmp_path / 'train.json'
  path.write_text(json.dumps(dict(TRAIN, weight_decay=-1)))
  with pytest.raises(UserError, match='"weight_decay" must be a number >= 0'):
    load_train_config(str(path))
  assert train_config_from_dict(TRAIN).weight_decay == 0.0
