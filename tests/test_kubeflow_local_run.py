"""The compiled Kubeflow pipeline runs without a cluster: every task through its own entrypoint.

`kfp_local` plays the KFP launcher: it builds each task's ExecutorInput, runs the container
command exactly as compiled (`python -m tfx...kubeflow_v2_run_executor ...`), and chains the
tasks through their executor_output.json. The test then checks the final artifacts.
"""
import glob
import json
import os

import pytest

from entropy_coder import codes_format
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import kfp_local
from entropy_coder.pipeline import kubeflow_runner

pytestmark = pytest.mark.e2e

SETTINGS = configs.RunSettings(
    model_config={'layer_depth': 2, 'layer_count': 2},
    train_config={'batch_size': 8, 'learning_rate': 0.05, 'decay_rate': 0.9,
                  'samples_per_decay': 20000},
    count=100, code_shape=(8, 8, 4), seed=5, train_steps=10, max_code_length=1.5)


def test_compiled_pipeline_runs_task_by_task_through_its_container_commands(tmp_path):
  spec_path = str(tmp_path / 'pipeline.yaml')
  root = str(tmp_path / 'root')
  kubeflow_runner.compile_pipeline(spec_path, SETTINGS.checked(), image='local/test:1',
                                   pipeline_root=root)
  lines = []
  produced = kfp_local.run_compiled(spec_path, root, progress=lines.append)

  spec = kfp_local.load_pipeline_spec(spec_path)
  assert set(produced) == set(spec.root.dag.tasks)
  assert sum(line.endswith('...') for line in lines) == len(spec.root.dag.tasks)

  examples = produced['SyntheticCodeGen']['examples']
  assert json.loads(kfp_local.artifact_metadata(examples)['split_names']) == ['train', 'eval']
  eval_files = glob.glob(os.path.join(examples.uri, 'Split-eval', '*'))
  codes = [code for _, code in codes_format.iter_tfrecord_codes(eval_files)]
  assert len(codes) == 10 and codes[0].shape == (8, 8, 4)

  model = produced['Trainer']['model']
  assert os.path.isfile(os.path.join(model.uri, 'Format-Serving', 'saved_model.pb'))

  # The Evaluator's TFMA output and blessing, as the next task received them.
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  evaluation = produced['Evaluator']['evaluation']
  (_, by_output), = tfma.load_eval_result(evaluation.uri).slicing_metrics
  code_length = by_output['']['']['code_length']['doubleValue']
  assert 0.5 < code_length < 1.5
  blessing = kfp_local.artifact_metadata(produced['Evaluator']['blessing'])
  assert blessing['blessed'] == 1
  assert os.path.exists(os.path.join(produced['Evaluator']['blessing'].uri, 'BLESSED'))

  # Pushed where the compiled push destination says: <root>/serving_model/<version>.
  pushed = kfp_local.artifact_metadata(produced['Pusher']['pushed_model'])
  assert pushed['pushed'] == 1
  assert os.path.dirname(pushed['pushed_destination']) == os.path.join(
      root, configs.SERVING_MODEL_DIRNAME)
  assert os.path.isfile(os.path.join(pushed['pushed_destination'], 'saved_model.pb'))

  # The real bitstream check ran in its own task on the same model and decoded exactly.
  report = kfp_local.artifact_metadata(produced['RealCompressionCheck']['compression'])
  assert report['round_trip_ok'] == 1
  assert report['theoretical_bits_per_bit'] == pytest.approx(code_length, rel=1e-4)
