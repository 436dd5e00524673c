"""Pipeline settings: the embedded demo, `--config` files and folders, flags, and CLI errors."""
import json
import os

import pytest

from entropy_coder import cli
from entropy_coder import push_gates
from entropy_coder.commands import pipeline_command
from entropy_coder.errors import UserError
from entropy_coder.pipeline import configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(*argv):
  parser = cli.build_parser()
  return parser.parse_args(['pipeline', 'run', *argv])


def test_embedded_demo_equals_configs_demo():
  """One set of demo values: the embedded copy (for installed images) matches the repo's JSON."""
  for name, embedded in (('model_config', configs.DEMO_MODEL_CONFIG),
                         ('train_config', configs.DEMO_TRAIN_CONFIG)):
    with open(os.path.join(REPO, 'configs', 'demo', f'{name}.json'), encoding='utf-8') as f:
      assert json.load(f) == embedded, name
  assert configs.RunSettings().checked() == configs.RunSettings()


def test_the_push_gates_defaults_are_the_components():
  """One definition (entropy_coder.push_gates): the settings, the TFMA config and the
  RealCompressionCheck component all default to it."""
  import inspect  # pylint: disable=g-import-not-at-top
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  from entropy_coder.pipeline import eval_config  # pylint: disable=g-import-not-at-top
  settings = configs.RunSettings()
  assert settings.max_real_over_theory == push_gates.DEFAULT_MAX_REAL_OVER_THEORY
  assert settings.max_code_length == push_gates.DEFAULT_MAX_CODE_LENGTH
  assert settings.change_tolerance == push_gates.DEFAULT_CHANGE_TOLERANCE
  check = inspect.signature(real_compression.check_real_compression).parameters
  assert check['max_real_over_theory'].default == push_gates.DEFAULT_MAX_REAL_OVER_THEORY
  make = inspect.signature(eval_config.make_eval_config).parameters
  assert make['max_code_length'].default == push_gates.DEFAULT_MAX_CODE_LENGTH
  assert make['change_tolerance'].default == push_gates.DEFAULT_CHANGE_TOLERANCE
  settings = pipeline_command.settings_from_args(_args('--max-real-over-theory', '0.05'))
  assert settings.pipeline_arguments()['max_real_over_theory'] == 0.05


def test_config_folder_takes_the_originals_json_files():
  settings = configs.load_settings(os.path.join(REPO, 'configs', 'synthetic'))
  assert settings.model_config == {'layer_depth': 2, 'layer_count': 8}
  assert settings.train_config['batch_size'] == 4 and settings.train_config['learning_rate'] == 0.1
  assert settings.count == configs.RunSettings().count  # the rest keeps the demo default


def test_config_file_then_flags_override_the_demo(tmp_path):
  config = tmp_path / 'run.json'
  config.write_text(json.dumps({'count': 40, 'code_shape': [4, 6, 2], 'train_steps': 9,
                                'model_config': {'layer_depth': 1, 'layer_count': 2}}))
  settings = pipeline_command.settings_from_args(
      _args('--config', str(config), '--train-steps', '11', '--channel-causal'))
  assert settings.count == 40 and settings.code_shape == (4, 6, 2)
  assert settings.train_steps == 11
  assert settings.model_config == {'layer_depth': 1, 'layer_count': 2, 'channel_causal': True}
  assert settings.train_config == configs.DEMO_TRAIN_CONFIG


@pytest.mark.parametrize('content, message', [
    ('{"count": 10, "epochs": 3}', r"unknown key\(s\) \['epochs'\]"),
    ('{"count": 0}', '"count" must be a positive int'),
    ('{"code_shape": [4, 4]}', '"code_shape" must be 3 positive ints'),
    ('{"max_code_length": -1}', '"max_code_length" must be a positive number'),
    ('{"model_config": {"layer_depth": 0, "layer_count": 2}}', 'layer_depth'),
    ('{"real_compression_check": "yes"}', '"real_compression_check" must be true or false'),
    ('{"max_real_over_theory": -0.01}', '"max_real_over_theory" must be a number >= 0'),
    ('{"max_real_over_theory": "2%"}', '"max_real_over_theory" must be a number >= 0'),
    ('[1, 2]', 'must be a JSON object'),
    ('{"count": 1', 'not valid JSON'),
])
def test_bad_config_files_name_the_file_and_the_problem(tmp_path, content, message):
  config = tmp_path / 'bad.json'
  config.write_text(content)
  with pytest.raises(UserError, match=message) as error:
    configs.load_settings(str(config))
  assert str(config) in str(error.value) or 'model_config' in str(error.value)


def test_bad_flags_and_missing_paths_are_one_line_errors(tmp_path, capsys):
  assert cli.main(['pipeline', 'run', '--pipeline-root', str(tmp_path), '--count', '0']) == 2
  assert cli.main(['pipeline', 'run', '--pipeline-root', str(tmp_path),
                   '--codes-dir', str(tmp_path / 'nope')]) == 2
  assert cli.main(['pipeline', 'run', '--config', str(tmp_path / 'missing.json')]) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 3
  assert '"count" must be a positive int' in lines[0]
  assert 'codes directory does not exist' in lines[1]
  assert 'missing.json: no such file' in lines[2]
  assert not os.path.exists(os.path.join(tmp_path, configs.METADATA_FILENAME))


def test_metrics_without_a_store_or_without_evaluations(tmp_path, capsys):
  assert cli.main(['metrics', str(tmp_path / 'nowhere')]) == 2
  assert cli.main(['metrics', str(tmp_path)]) == 2
  # A real but empty ML-Metadata store (as left by a run that failed before the Evaluator).
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = str(tmp_path / configs.METADATA_FILENAME)
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
  metadata_store.MetadataStore(connection)
  assert cli.main(['metrics', str(tmp_path)]) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 3
  assert lines[0].endswith('nowhere: no such pipeline root')
  assert 'no ML-Metadata store (metadata.sqlite)' in lines[1]
  assert 'has no finished Evaluator run yet' in lines[2]


def test_a_users_error_inside_a_component_is_one_line_naming_it(tmp_path, capsys):
  """Bad input found only when the ExampleGen runs: no Beam traceback, the component named."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  codes = tmp_path / 'codes'
  codes.mkdir()
  codes_format.write_npz(str(codes / 'only.npz'), np.zeros((4, 4, 2), np.uint8), layer_depth=2)
  status = cli.main(['pipeline', 'run', '--pipeline-root', str(tmp_path / 'root'),
                     '--codes-dir', str(codes)])
  err = capsys.readouterr().err
  assert status == 2
  assert 'Traceback' not in err
  assert '] NpzCodeImport FAILED' in err
  last = err.strip().splitlines()[-1]
  assert last.startswith(f'entropy-coder pipeline: error: {codes}: 1 samples leave split eval empty')
  assert 'NpzCodeImport' in last


def test_a_run_on_pictures_has_its_own_step_default_unless_one_is_given(tmp_path):
  pictures = tmp_path / 'pictures'
  pictures.mkdir()
  assert pipeline_command.settings_from_args(_args()).train_steps == configs.RunSettings.train_steps
  images = pipeline_command.settings_from_args(_args('--images', str(pictures)))
  assert images.train_steps == configs.IMAGES_TRAIN_STEPS != configs.RunSettings.train_steps
  given = pipeline_command.settings_from_args(_args('--images', str(pictures), '--train-steps', '7'))
  assert given.train_steps == 7
  config = tmp_path / 'run.json'
  config.write_text(json.dumps({'train_steps': 9}))
  assert pipeline_command.settings_from_args(
      _args('--images', str(pictures), '--config', str(config))).train_steps == 9
