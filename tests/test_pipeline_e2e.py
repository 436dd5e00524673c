"""End to end: the real pipeline under BeamDagRunner with a real sqlite ML-Metadata store.

Tiny data (200 synthetic 8x8x4 codes, 20 training steps). Everything is asserted through
ML-Metadata and the artifacts it points to; TFMA's figures are recomputed here from the
exported SavedModel on the eval split, independently of TFMA and of the model's own sums.
"""
import glob
import json
import os

import numpy as np
import pytest

from helpers import E2E_MODEL_CONFIG, E2E_TRAIN_CONFIG
from entropy_coder import codes_format
from entropy_coder import push_gates
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import inspect_runs
from entropy_coder.pipeline import local_runner

pytestmark = pytest.mark.e2e

SETTINGS = configs.RunSettings(
    model_config=dict(E2E_MODEL_CONFIG), train_config=dict(E2E_TRAIN_CONFIG),
    count=200, code_shape=(8, 8, 4), seed=3, train_steps=20,
    # A bound any model of this size meets, so the first model is surely blessed.
    max_code_length=1.5)

COMPONENTS = ('SyntheticCodeGen', 'Trainer', 'Evaluator', 'Pusher', 'RealCompressionCheck')


def _executions(root):
  """{component id: [(execution id, state name)]} from ML-Metadata."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  store = inspect_runs.open_store(root)
  by_node = {}
  for execution in sorted(store.get_executions(), key=lambda e: e.id):
    node = execution.type.split('.')[-1]  # e.g. tfx.components.trainer.component.Trainer
    by_node.setdefault(node, []).append(
        metadata_store_pb2.Execution.State.Name(execution.last_known_state))
  return by_node


def _output_uri(root, component, key):
  """URI of the newest output artifact `key` of `component`, via ML-Metadata."""
  store = inspect_runs.open_store(root)
  executions = inspect_runs._executions_of(store, '.' + component)  # pylint: disable=protected-access
  return inspect_runs._outputs(store, executions[-1].id)[key][0]  # pylint: disable=protected-access


def _input_uri(root, component, key):
  """The input artifact `key` of the newest execution of `component`, via ML-Metadata."""
  store = inspect_runs.open_store(root)
  executions = inspect_runs._executions_of(store, '.' + component)  # pylint: disable=protected-access
  return inspect_runs._inputs(store, executions[-1].id)[key][0]  # pylint: disable=protected-access


def _eval_records(examples_uri):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(examples_uri, 'Split-eval', '*')))
  assert files, f'no eval split under {examples_uri}'
  return [r for r in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator()]


def _recompute_code_length(model_dir, records, layer_depth):
  """Code length overall and per layer from the SavedModel's probabilities, in numpy."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  bits = np.stack([codes_format.decode_example(r) for r in records]).astype(np.float64)
  probs = serve(examples=tf.constant(records))['probs'].numpy().astype(np.float64)
  probs = probs.reshape(bits.shape)
  per_bit = -np.log2(np.where(bits == 1, probs, 1 - probs))
  layers = per_bit.reshape(*per_bit.shape[:3], -1, layer_depth).mean(axis=(0, 1, 2, 4))
  return per_bit.mean(), layers


def test_local_run_trains_evaluates_blesses_pushes_and_then_hits_the_cache(tmp_path):
  root = str(tmp_path / 'root')
  paths = local_runner.run(SETTINGS, root)
  assert paths.root == root and os.path.isfile(paths.metadata_path)

  # Each component ran once, for real.
  first = _executions(root)
  for component in COMPONENTS:
    assert first.get(component) == ['COMPLETE'], first

  # Examples: 9:1 split of 200 codes of the requested shape.
  examples = _output_uri(root, 'SyntheticCodeGen', 'examples')
  assert json.loads(examples.properties['split_names'].string_value) == ['train', 'eval']
  records = _eval_records(examples.uri)
  assert len(records) == 20
  assert {codes_format.decode_example(r).shape for r in records} == {(8, 8, 4)}

  # The trained model: a complete model directory.
  model = _output_uri(root, 'Trainer', 'model')
  model_dir = os.path.join(model.uri, 'Format-Serving')
  for name in ('saved_model.pb', 'weights.npz', 'entropy_coder_model.json'):
    assert os.path.isfile(os.path.join(model_dir, name)), name

  # TFMA's metrics equal an independent recomputation from the SavedModel.
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  evaluation = inspect_runs.latest_evaluation(root)
  loaded = tfma.load_eval_result(evaluation.evaluation_uri)
  (_, by_output), = loaded.slicing_metrics
  tfma_metrics = {k: v['doubleValue'] for k, v in by_output[''][''].items()}
  code_length, layers = _recompute_code_length(model_dir, records, layer_depth=2)
  assert tfma_metrics['code_length'] == pytest.approx(code_length, rel=1e-5)
  assert tfma_metrics['compression_ratio'] == pytest.approx(1 / code_length, rel=1e-5)
  assert tfma_metrics['code_length_layer_00'] == pytest.approx(layers[0], rel=1e-5)
  assert tfma_metrics['code_length_layer_01'] == pytest.approx(layers[1], rel=1e-5)
  assert tfma_metrics['example_count'] == 20
  assert 0.5 < code_length < 1.2  # a real model of these codes, not a constant

  # The floors beside it are those of this very eval split (synthetic source, model's
  # layer_depth 2: the visibility floor; every bit seen: the source entropy).
  from entropy_coder.data_gen import floors  # pylint: disable=g-import-not-at-top
  codes = np.stack([codes_format.decode_example(r) for r in records])
  assert evaluation.floor == pytest.approx({
      'visibility': floors.code_length(codes, floors.ideal_probabilities(codes, 2)),
      'source_entropy': floors.code_length(codes, floors.ideal_probabilities(codes, 2, True))})
  assert evaluation.floor['source_entropy'] < evaluation.floor['visibility'] < code_length

  # The real bitstream of the eval split decoded exactly, at about the model's code length:
  # the coders' ideal (the mixed stream's, format version 4, which may learn a little below the
  # model's figure) plus a range coder's overhead on 1280 bits.
  real = evaluation.real_compression
  assert real['round_trip_ok'] and real['sample_count'] == 20
  assert real['theoretical_bits_per_bit'] == pytest.approx(code_length, rel=1e-4)
  assert real['coded_ideal_bits_per_bit'] <= real['real_payload_bits_per_bit'] < code_length + 0.05
  assert real['coded_ideal_bits_per_bit'] > code_length - 0.05

  # The round trip is exact and within the default tolerance, so the check blesses the push:
  # the Pusher's infra_blessing input is that InfraBlessing, blessed = 1.
  assert real['payload_over_theory'] <= push_gates.DEFAULT_MAX_REAL_OVER_THEORY
  assert real['blessed'] is True and real['reason'] == '' and real['state'] == 'COMPLETE'
  check_blessing = _output_uri(root, 'RealCompressionCheck', 'blessing')
  assert check_blessing.custom_properties['blessed'].int_value == 1
  assert _input_uri(root, 'Pusher', 'infra_blessing').id == check_blessing.id

  # Blessed (under the bound, no baseline yet) and pushed: the very model, byte for byte.
  assert evaluation.blessed is True and evaluation.baseline_model_uri is None
  assert os.path.dirname(evaluation.pushed_model_uri) == paths.serving_model_dir
  with open(os.path.join(model_dir, 'entropy_coder_model.json'), encoding='utf-8') as f:
    trained = json.load(f)
  with open(os.path.join(evaluation.pushed_model_uri, 'entropy_coder_model.json'),
            encoding='utf-8') as f:
    assert json.load(f)['fingerprint'] == trained['fingerprint']

  # Second run, nothing changed: data and training come from the cache; the Evaluator now
  # compares the model with the latest blessed one (itself) and blesses it again, which only
  # holds with the change threshold's sign right (tolerance 0 for LOWER_IS_BETTER).
  local_runner.run(SETTINGS, root)
  second = _executions(root)
  assert second['SyntheticCodeGen'] == ['COMPLETE', 'CACHED']
  assert second['Trainer'] == ['COMPLETE', 'CACHED']
  again = inspect_runs.latest_evaluation(root)
  assert again.model_uri == evaluation.model_uri
  assert again.baseline_model_uri == model.uri
  assert again.baseline_metrics['code_length'] == pytest.approx(code_length, rel=1e-5)
  assert again.changes['code_length'] == 0.0
  assert again.blessed is True

  # Third run: the baseline is settled too, so every component is a cache hit.
  local_runner.run(SETTINGS, root)
  third = _executions(root)
  for component in COMPONENTS:
    assert third[component][-1] == 'CACHED', third


def test_cli_run_with_an_impossible_bound_blesses_nothing_and_pushes_nothing(tmp_path, capsys):
  """Through `entropy-coder pipeline run --config FILE --max-code-length 0.01 --channel-causal`,
  as a user would; the channel-causal model goes through Trainer and TFMA like the original."""
  from entropy_coder import cli  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / 'root')
  config = tmp_path / 'tiny.json'
  config.write_text(json.dumps({
      'model_config': SETTINGS.model_config, 'train_config': SETTINGS.train_config,
      'count': 100, 'code_shape': [8, 8, 4], 'train_steps': 5, 'real_compression_check': False}))
  status = cli.main(['pipeline', 'run', '--pipeline-root', root, '--config', str(config),
                     '--max-code-length', '0.01', '--channel-causal'])
  captured = capsys.readouterr()
  assert status == 0
  assert 'blessed            NO (code_length (bound)' in captured.out
  # Channel-causal: nothing of the pixel is hidden, so its floor is the source entropy.
  assert 'floor              ' in captured.out and 'source entropy' in captured.out
  assert 'pushed model       none (not blessed by the Evaluator)' in captured.out
  assert '] Trainer done in' in captured.err  # one progress line per component

  evaluation = inspect_runs.latest_evaluation(root)
  assert evaluation.metrics['code_length'] > 0.01
  assert evaluation.blessed is False
  assert evaluation.pushed_model_uri is None
  pushed = _output_uri(root, 'Pusher', 'pushed_model')
  assert pushed.custom_properties['pushed'].int_value == 0
  serving = os.path.join(root, configs.SERVING_MODEL_DIRNAME)
  assert not os.path.exists(serving) or not os.listdir(serving)
  blessing = _output_uri(root, 'Evaluator', 'blessing')
  assert os.path.exists(os.path.join(blessing.uri, 'NOT_BLESSED'))
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  trained = model_files.read_model_files(_output_uri(root, 'Trainer', 'model').uri)
  assert trained.model_config['channel_causal'] is True
  assert 'layer0/brnn/channel_ar/kernel' in trained.weights

  # `entropy-coder metrics` reads the same run back: JSON for scripts, and the layer plot.
  plot = tmp_path / 'layers.png'
  assert cli.main(['metrics', root, '--json', '--plot', str(plot)]) == 0
  shown = json.loads(capsys.readouterr().out)
  assert shown['blessed'] is False
  assert shown['floor']['visibility'] == pytest.approx(shown['floor']['source_entropy'])
  assert shown['metrics']['code_length'] == pytest.approx(evaluation.metrics['code_length'])
  assert sorted(k for k in shown['metrics'] if k.startswith('code_length_layer_')) == [
      'code_length_layer_00', 'code_length_layer_01']
  assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

  # The notebook recipe of docs/PIPELINE.md works on this evaluation.
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  result = tfma.load_eval_result(evaluation.evaluation_uri)
  assert result.get_metrics_for_slice()['code_length']['doubleValue'] == pytest.approx(
      evaluation.metrics['code_length'])
  assert type(tfma.view.render_slicing_metrics(result)).__name__ == 'SlicingMetricsViewer'
  assert not tfma.load_validation_result(evaluation.evaluation_uri).validation_ok
  frame = tfma.dataframe.metrics_as_dataframes(tfma.load_metrics(evaluation.evaluation_uri))
  table = frame.double_value
  names = list(table[('metric_keys', 'name')])
  values = list(table[('metric_values', 'double_value')])
  assert values[names.index('code_length')] == pytest.approx(evaluation.metrics['code_length'])


# Codes of one .npz per image, every one a different H x W (issue 12 §1): edge shapes, shapes
# below and above the training crop, 20 eval codes (more than 16 SIMD lanes).
MIXED_SHAPES = [(1, 1), (1, 9), (7, 1), (3, 5), (8, 8), (12, 7), (5, 20), (16, 16), (17, 9),
                (11, 11), (20, 6), (13, 21), (2, 30), (9, 9), (6, 14), (15, 4), (10, 10)]


def _write_mixed_npz(directory, count):
  from entropy_coder.data_gen.synthetic import generate_codes  # pylint: disable=g-import-not-at-top
  os.makedirs(directory)
  for i in range(count):
    h, w = MIXED_SHAPES[i % len(MIXED_SHAPES)]
    code = generate_codes(7, [i], shape=(h, w, 4))[0]
    codes_format.write_npz(os.path.join(directory, f'image_{i:03d}.npz'), code, 2)
  return directory


def _pooled_alone(model_dir, records):
  """(pooled code length, mean per code) from the SavedModel, each record served ALONE."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  figures = [serve(examples=tf.constant([r])) for r in records]
  bits = np.array([f['code_length_bits'].numpy()[0] for f in figures], np.float64)
  counts = np.array([f['num_bits'].numpy()[0] for f in figures], np.float64)
  return bits.sum() / counts.sum(), float(np.mean(bits / counts))


def test_cli_run_whose_real_size_misses_the_tolerance_is_blessed_by_tfma_but_not_pushed(
    tmp_path, capsys):
  """`--max-real-over-theory 0`: an exact round trip whose payload cannot be smaller than the
  ideal code length (a range coder's termination alone costs bytes). The check completes and
  blesses nothing, the Pusher (TFMA blessed the model) pushes nothing, and both the summary and
  `entropy-coder metrics` say why.

  The data are 200 .npz codes of 17 different shapes (NpzCodeImport): the Trainer trains on
  tiles, TFMA's code_length is the pooled figure of every code evaluated alone, and the real
  round trip codes the mixed eval split."""
  from entropy_coder import cli  # pylint: disable=g-import-not-at-top
  from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / 'root')
  config = tmp_path / 'tiny.json'
  config.write_text(json.dumps({
      'model_config': SETTINGS.model_config, 'train_config': dict(SETTINGS.train_config, crop=8),
      'codes_dir': _write_mixed_npz(str(tmp_path / 'npz'), 200),
      'train_steps': 5, 'max_code_length': 1.5}))
  status = cli.main(['pipeline', 'run', '--pipeline-root', root, '--config', str(config),
                     '--max-real-over-theory', '0'])
  captured = capsys.readouterr()
  assert status == 0
  components = ('NpzCodeImport',) + COMPONENTS[1:]
  for component in components:  # nothing failed: the pipeline went on to the Pusher
    assert _executions(root)[component] == ['COMPLETE'], component

  # TFMA on the mixed eval split: pooled and per-code figures of each code served alone.
  records = _eval_records(_output_uri(root, 'NpzCodeImport', 'examples').uri)
  assert len(records) == 20
  assert len({codes_format.decode_example(r).shape for r in records}) == len(MIXED_SHAPES)
  model_dir = os.path.join(_output_uri(root, 'Trainer', 'model').uri, 'Format-Serving')
  pooled, per_code = _pooled_alone(model_dir, records)

  evaluation = inspect_runs.latest_evaluation(root)
  assert evaluation.metrics['code_length'] == pytest.approx(pooled, rel=1e-6)
  assert evaluation.metrics['code_length_per_code_mean'] == pytest.approx(per_code, rel=1e-6)
  assert evaluation.metrics['compression_ratio'] == pytest.approx(1 / pooled, rel=1e-6)
  real = evaluation.real_compression
  assert real['round_trip_ok'] is True and real['sample_count'] == 20
  assert real['theoretical_bits_per_bit'] == pytest.approx(pooled, rel=1e-4)
  assert evaluation.blessed is True  # TFMA's verdict alone would have pushed it
  assert real['round_trip_ok'] is True and real['blessed'] is False
  assert real['payload_over_theory'] > 0 and real['max_real_over_theory'] == 0
  assert real['reason'].startswith('real payload ') and 'max_real_over_theory 0 allows' in real['reason']
  assert evaluation.pushed_model_uri is None

  out = captured.out
  shown = evaluation.metrics
  assert f'code length        {shown["code_length"]:.4f} bits/bit on the eval split (pooled: ' in out
  assert (f'per code mean      {shown["code_length_per_code_mean"]:.4f} bits/bit (each code '
          'weighing the same)') in out
  assert 'blessed            yes' in out
  assert f'round trip         NOT BLESSED: {real["reason"]}' in out
  assert f'pushed model       none (round trip not blessed: {real["reason"]})' in out

  # The Pusher read the check's InfraBlessing (blessed 0) and pushed nothing.
  check_blessing = _output_uri(root, 'RealCompressionCheck', 'blessing')
  assert check_blessing.custom_properties['blessed'].int_value == 0
  assert check_blessing.custom_properties['reason'].string_value == real['reason']
  assert os.path.exists(os.path.join(check_blessing.uri, real_compression.NOT_BLESSED_FILE))
  assert _input_uri(root, 'Pusher', 'infra_blessing').id == check_blessing.id
  assert _output_uri(root, 'Pusher', 'pushed_model').custom_properties['pushed'].int_value == 0
  serving = os.path.join(root, configs.SERVING_MODEL_DIRNAME)
  assert not os.path.exists(serving) or not os.listdir(serving)

  # `entropy-coder metrics`: the table and the JSON say the same.
  assert cli.main(['metrics', root]) == 0
  table = capsys.readouterr().out
  assert '\nBLESSED\n' in table
  assert f'round trip  NOT BLESSED: {real["reason"]}' in table
  assert f'not pushed  (round trip not blessed: {real["reason"]})' in table
  assert cli.main(['metrics', root, '--json']) == 0
  shown = json.loads(capsys.readouterr().out)
  assert shown['real_compression']['blessed'] is False
  assert shown['real_compression']['reason'] == real['reason']
  assert shown['pushed_model_uri'] is None
