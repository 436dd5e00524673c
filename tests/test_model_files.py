"""weights.npz + entropy_coder_model.json: round trip, fingerprint, directory forms, bad input."""
import json
import os

import numpy as np
import pytest

from entropy_coder import model_files
from entropy_coder.errors import UserError

CONFIG = {'layer_depth': 2, 'layer_count': 3}


def _weights(seed=0):
  rng = np.random.default_rng(seed)
  return {'layer0/brnn/out1x1_b/bias': rng.normal(size=2).astype(np.float32),
          'layer_rnn/lstm/input_conv/kernel': rng.normal(size=(1, 1, 2, 16)).astype(np.float32)}


def test_round_trip_keeps_weights_and_normalises_the_config(tmp_path):
  weights = _weights()
  fingerprint = model_files.write_model_files(str(tmp_path), weights, CONFIG)
  files = model_files.read_model_files(str(tmp_path))
  assert files.fingerprint == fingerprint and len(fingerprint) == 64
  assert files.model_config == {'layer_depth': 2, 'layer_count': 3, 'coded_layer_count': 0,
                                'channel_causal': False}
  assert files.path == str(tmp_path)
  assert set(files.weights) == set(weights)
  for name, value in weights.items():
    assert files.weights[name].dtype == np.float32
    assert np.array_equal(files.weights[name], value)
  document = json.loads((tmp_path / model_files.MODEL_JSON).read_text())
  assert document['format'] == 'entropy-coder-model' and document['version'] == 1


def test_fingerprint_covers_names_shapes_values_and_config():
  weights = _weights()
  base = model_files.fingerprint(weights, model_files.normalize_model_config(CONFIG))
  config = model_files.normalize_model_config(CONFIG)
  # The defaults written out or left implicit are the same model.
  assert model_files.fingerprint(weights, model_files.normalize_model_config(
      dict(CONFIG, coded_layer_count=0, channel_causal=False))) == base
  changed_value = dict(weights)
  changed_value['layer0/brnn/out1x1_b/bias'] = np.nextafter(weights['layer0/brnn/out1x1_b/bias'],
                                                            np.float32(9))
  renamed = {name.replace('layer0', 'layer1'): value for name, value in weights.items()}
  reshaped = dict(weights, **{'layer0/brnn/out1x1_b/bias': weights['layer0/brnn/out1x1_b/bias'][None]})
  others = [model_files.fingerprint(changed_value, config), model_files.fingerprint(renamed, config),
            model_files.fingerprint(reshaped, config),
            model_files.fingerprint(weights, dict(config, layer_count=4))]
  assert len({base, *others}) == 5
  # float64 input gives the fingerprint of its float32 values (what is stored).
  as_f64 = {name: value.astype(np.float64) for name, value in weights.items()}
  assert model_files.fingerprint(as_f64, config) == base


def test_tampered_weights_fail_the_fingerprint(tmp_path):
  model_files.write_model_files(str(tmp_path), _weights(), CONFIG)
  np.savez(tmp_path / model_files.WEIGHTS_NPZ, **_weights(seed=1))
  with pytest.raises(UserError, match='fingerprint mismatch'):
    model_files.read_model_files(str(tmp_path))


def test_directory_forms_resolve(tmp_path):
  model_dir = tmp_path / 'model'
  model_files.write_model_files(str(model_dir), _weights(), CONFIG)
  assert model_files.resolve_model_dir(str(model_dir)) == str(model_dir)
  # A TFX Trainer Model artifact: the export sits in Format-Serving/.
  artifact = tmp_path / 'Trainer' / 'model' / '7'
  model_files.write_model_files(str(artifact / 'Format-Serving'), _weights(), CONFIG)
  assert model_files.resolve_model_dir(str(artifact)) == str(artifact / 'Format-Serving')
  # A Pusher destination: numeric version directories, the newest wins (numerically).
  pushed = tmp_path / 'serving'
  model_files.write_model_files(str(pushed / '999'), _weights(1), CONFIG)
  model_files.write_model_files(str(pushed / '1000'), _weights(2), CONFIG)
  (pushed / 'notes').mkdir()
  assert model_files.resolve_model_dir(str(pushed)) == str(pushed / '1000')
  assert model_files.read_model_files(str(pushed)).fingerprint == model_files.fingerprint(
      _weights(2), model_files.normalize_model_config(CONFIG))


def test_not_a_model_directory_says_run_train_first(tmp_path):
  with pytest.raises(UserError, match='not an entropy-coder model directory .*run train first'):
    model_files.resolve_model_dir(str(tmp_path))
  with pytest.raises(UserError, match='no such model directory'):
    model_files.resolve_model_dir(str(tmp_path / 'missing'))


@pytest.mark.parametrize('config, problem', [
    ({'layer_count': 3}, 'missing key "layer_depth"'),
    ({'layer_depth': 0, 'layer_count': 3}, '"layer_depth" must be a positive int'),
    ({'layer_depth': 2.0, 'layer_count': 3}, '"layer_depth" must be a positive int'),
    ({'layer_depth': True, 'layer_count': 3}, '"layer_depth" must be a positive int'),
    ({'layer_depth': 2, 'layer_count': 3, 'channel_causal': 1}, 'true or false'),
    ({'layer_depth': 2, 'layer_count': 3, 'coded_layer_count': 4}, 'exceeds'),
    ({'layer_depth': 2, 'layer_count': 3, 'depth': 2}, r"unknown key\(s\) \['depth'\]"),
    ([2, 3], 'JSON object'),
])
def test_bad_configs_are_refused(tmp_path, config, problem):
  with pytest.raises(UserError, match=problem):
    model_files.write_model_files(str(tmp_path), _weights(), config)


def test_bad_files_give_one_line_errors(tmp_path):
  model_files.write_model_files(str(tmp_path), _weights(), CONFIG)
  json_path = tmp_path / model_files.MODEL_JSON
  document = json.loads(json_path.read_text())

  def expect(problem):
    with pytest.raises(UserError, match=problem) as caught:
      model_files.read_model_files(str(tmp_path))
    assert '\n' not in str(caught.value)

  json_path.write_text(json.dumps(dict(document, version=2)))
  expect('version 2 is not supported')
  json_path.write_text(json.dumps(dict(document, format='other')))
  expect('not an entropy-coder model file')
  json_path.write_text('{not json')
  expect('not valid JSON')
  json_path.write_text(json.dumps(document))
  np.savez(tmp_path / model_files.WEIGHTS_NPZ, bad=np.array([object()], dtype=object))
  expect('not a valid weights .npz')
  np.savez(tmp_path / model_files.WEIGHTS_NPZ, w=np.zeros(3, np.float64))
  expect('dtype float64, expected float32')
  os.remove(tmp_path / model_files.WEIGHTS_NPZ)
  expect('missing')
