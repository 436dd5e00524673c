"""The compiled Kubeflow pipeline runs without a cluster: every task through its own entrypoint.

`kfp_local` plays the KFP launcher: it builds each task's ExecutorInput, runs the container
command exactly as compiled (`python -m tfx...kubeflow_v2_run_executor ...`), and chains the
tasks through their executor_output.json. The test drives it through its command-line front,
`entropy-coder pipeline run-compiled --json`, and then checks the final artifacts.

It imports a folder of the user's `.npz` codes (NpzCodeImport, a file-based ExampleGen whose
compiled task also has TFX's `preCacheCheck` driver hook); the local end-to-end test covers
the synthetic ExampleGen. The spec runs twice on one pipeline root: the first run has no
baseline (nothing pushed yet: BaselinePicker says so and the Evaluator blesses on the bound
alone), the second compares with the model the first run pushed.
"""
import glob
import json
import os

import numpy as np
import pytest

from helpers import E2E_MODEL_CONFIG, E2E_TRAIN_CONFIG
from entropy_coder import cli
from entropy_coder import codes_format
from entropy_coder.commands import pipeline_command
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import kfp_local
from entropy_coder.pipeline import kubeflow_runner

pytestmark = pytest.mark.e2e

SETTINGS = configs.RunSettings(
    model_config=dict(E2E_MODEL_CONFIG), train_config=dict(E2E_TRAIN_CONFIG),
    seed=5, train_steps=10, max_code_length=1.5,
    # 4 eval codes of 256 bits: the range coder writes 32-bit words, so its last word alone is
    # ~3 % of this payload; the 2 % default is for real eval splits (docs/PIPELINE.md).
    max_real_over_theory=0.1)


def _write_codes(directory, count=40):
  """`count` random 8x8x4 codes (layer_depth 2) as the original's .npz files."""
  directory.mkdir()
  rng = np.random.default_rng(11)
  codes = rng.integers(0, 2, size=(count, 8, 8, 4), dtype=np.uint8)
  for index, code in enumerate(codes):
    codes_format.write_npz(str(directory / f'code_{index:03d}.npz'), code, layer_depth=2)
  return codes


def test_compiled_pipeline_runs_task_by_task_through_its_container_commands(tmp_path, capsys):
  codes = _write_codes(tmp_path / 'codes')
  spec_path = str(tmp_path / 'pipeline.yaml')
  root = str(tmp_path / 'root')
  settings = SETTINGS.replace(codes_dir=str(tmp_path / 'codes')).checked()
  kubeflow_runner.compile_pipeline(spec_path, settings, image='local/test:1', pipeline_root=root)
  status = cli.main(['pipeline', 'run-compiled', spec_path, '--pipeline-root', root, '--json'])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  produced = json.loads(captured.out)  # {task: {output key: {'uri', 'metadata'}}}

  spec = kfp_local.load_pipeline_spec(spec_path)
  assert set(produced) == set(spec.root.dag.tasks)
  lines = captured.err.strip().splitlines()  # one line as a task starts, one as it ends
  assert sum(line.endswith('...') for line in lines) == len(spec.root.dag.tasks)
  assert sum(' done in ' in line for line in lines) == len(spec.root.dag.tasks)
  run_1 = os.path.join(root, 'run-1')
  for task in spec.root.dag.tasks:
    assert os.path.isfile(os.path.join(run_1, task, 'executor.log'))

  # First run: nothing pushed yet, so no baseline; TFMA evaluated the candidate alone.
  from entropy_coder.pipeline import inspect_runs  # pylint: disable=g-import-not-at-top
  picked = produced['BaselinePicker']['baseline']['metadata']
  assert picked['has_baseline'] == 0 and picked['baseline_source'].startswith('no baseline: ')
  assert 'no baseline' in open(os.path.join(run_1, 'BaselinePicker', 'executor.log')).read()
  first = inspect_runs.read_metrics(produced['Evaluator']['evaluation']['uri'])
  assert set(first) == {'candidate'} and not first['candidate']['changes']

  # Files 9, 19, 29, 39 form the eval split (index splits 9:1), their codes unchanged.
  examples = produced['NpzCodeImport']['examples']
  assert json.loads(examples['metadata']['split_names']) == ['train', 'eval']
  eval_files = glob.glob(os.path.join(examples['uri'], 'Split-eval', '*'))
  imported = sorted((code.tobytes() for _, code in codes_format.iter_tfrecord_codes(eval_files)))
  assert imported == sorted(codes[i].tobytes() for i in (9, 19, 29, 39))

  model = produced['Trainer']['model']
  assert os.path.isfile(os.path.join(model['uri'], 'Format-Serving', 'saved_model.pb'))

  # The Evaluator's TFMA output and blessing, as the next task received them.
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  evaluation = produced['Evaluator']['evaluation']
  (_, by_output), = tfma.load_eval_result(evaluation['uri']).slicing_metrics
  code_length = by_output['']['']['code_length']['doubleValue']
  assert 0.9 < code_length < 1.5  # random bits: no model does much better than 1 bit/bit
  blessing = produced['Evaluator']['blessing']['metadata']
  assert blessing['blessed'] == 1
  assert os.path.exists(os.path.join(produced['Evaluator']['blessing']['uri'], 'BLESSED'))

  # The round-trip blessing (InfraBlessing) reached the Pusher as compiled: blessed.
  round_trip = produced['RealCompressionCheck']['blessing']['metadata']
  assert round_trip['blessed'] == 1 and round_trip['reason'] == ''

  # Pushed where the compiled push destination says: <root>/serving_model/<version>.
  pushed = produced['Pusher']['pushed_model']['metadata']
  assert pushed['pushed'] == 1
  assert os.path.dirname(pushed['pushed_destination']) == os.path.join(
      root, configs.SERVING_MODEL_DIRNAME)
  assert os.path.isfile(os.path.join(pushed['pushed_destination'], 'saved_model.pb'))

  # The real bitstream check ran in its own task on the same model and decoded exactly.
  report = produced['RealCompressionCheck']['compression']['metadata']
  assert report['round_trip_ok'] == 1 and report['blessed'] == 1
  assert report['payload_over_theory'] <= report['max_real_over_theory'] == 0.1
  assert report['theoretical_bits_per_bit'] == pytest.approx(code_length, rel=1e-4)

  # Without --json: one line per output artifact, the blessings and the push with their verdict.
  summary = pipeline_command.compiled_run_summary(produced, spec_path, root).splitlines()
  assert summary[0] == f'ran {len(spec.root.dag.tasks)} tasks of {spec_path} under {root}'
  by_name = {line.split()[0]: line for line in summary[1:-1]}
  assert by_name['Evaluator.blessing'].endswith('(blessed)')
  assert by_name['RealCompressionCheck.blessing'].endswith('(blessed)')
  assert by_name['Pusher.pushed_model'].endswith(f'(pushed to {pushed["pushed_destination"]})')
  assert by_name['BaselinePicker.baseline'].endswith(f'({picked["baseline_source"]})')

  # Second run of the same spec on the same root: the first run's push is the baseline.
  status = cli.main(['pipeline', 'run-compiled', spec_path, '--pipeline-root', root, '--json'])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  second = json.loads(captured.out)
  assert second['Evaluator']['evaluation']['uri'].startswith(os.path.join(root, 'run-2') + os.sep)
  picked = second['BaselinePicker']['baseline']['metadata']
  assert picked['has_baseline'] == 1
  assert picked['baseline_version'] == os.path.basename(pushed['pushed_destination'])
  by_role = inspect_runs.read_metrics(second['Evaluator']['evaluation']['uri'])
  assert set(by_role) == {'candidate', 'baseline'}
  # TFMA evaluated the pushed model as the baseline and reports candidate - baseline.
  assert by_role['baseline']['metrics']['code_length'] == pytest.approx(code_length, abs=1e-6)
  change = by_role['candidate']['changes']['code_length']
  assert change == pytest.approx(
      by_role['candidate']['metrics']['code_length'] - by_role['baseline']['metrics']['code_length'],
      abs=1e-6)
  # The change threshold was checked: blessed exactly when no worse than the baseline.
  blessed = second['Evaluator']['blessing']['metadata']['blessed'] == 1
  assert blessed == (change <= configs.RunSettings().change_tolerance)
