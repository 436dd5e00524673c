"""The code-length CombineFn alone, and the blessing thresholds against TFMA's own validator."""
import numpy as np
import pytest
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.utils import config_util

from entropy_coder.pipeline import eval_config as eval_config_lib
from entropy_coder.pipeline import tfma_metrics

KEY = metric_types.MetricKey(name=tfma_metrics.CODE_LENGTH)


def _element(code_length_bits, num_bits, layer_bits=None, layer_num_bits=None):
  predictions = {'code_length_bits': np.float32(code_length_bits),
                 'num_bits': np.float32(num_bits)}
  if layer_bits is not None:
    predictions['layer_code_length_bits'] = np.asarray(layer_bits, np.float32)
    predictions['layer_num_bits'] = np.asarray(layer_num_bits, np.float32)
  return metric_types.StandardMetricInputs({'predictions': predictions})


def _combine(elements, combiner, split=1):
  """Adds elements into `split` accumulators (as Beam would on workers) and merges them."""
  accumulators = [combiner.create_accumulator() for _ in range(split)]
  for index, element in enumerate(elements):
    accumulators[index % split] = combiner.add_input(accumulators[index % split], element)
  return combiner.extract_output(combiner.merge_accumulators(accumulators))


def test_code_length_weighs_codes_by_their_bit_count():
  # A small code at 0.5 bit/bit and a 9x bigger one at 1.0: the split costs 95 bits for 100.
  elements = [_element(5.0, 10.0), _element(90.0, 90.0)]
  result = _combine(elements, tfma_metrics.CodeLengthCombiner(KEY))
  assert result[KEY] == pytest.approx(95.0 / 100.0)
  ratio_key = metric_types.MetricKey(name=tfma_metrics.COMPRESSION_RATIO)
  assert result[ratio_key] == pytest.approx(100.0 / 95.0)
  # The mean of per-code ratios (0.75) would be wrong as the dataset's figure; it is reported
  # beside it under its own name.
  assert result[KEY] != pytest.approx(0.75)
  mean_key = metric_types.MetricKey(name=tfma_metrics.PER_CODE_MEAN)
  assert result[mean_key] == pytest.approx(0.75)
  assert _combine(elements, tfma_metrics.CodeLengthCombiner(KEY), split=2)[mean_key] == pytest.approx(0.75)


def test_per_layer_code_length_skips_layers_without_bits_and_merges_in_any_order():
  rng = np.random.default_rng(3)
  elements, layer_sums = [], np.zeros((2, 4))
  for _ in range(17):
    num = np.array([20.0, 20.0, 20.0, 0.0])
    bits = rng.uniform(0, 20, size=4) * (num > 0)
    layer_sums += (bits, num)
    elements.append(_element(bits.sum(), num.sum(), bits, num))
  one = _combine(elements, tfma_metrics.CodeLengthCombiner(KEY))
  three = _combine(elements, tfma_metrics.CodeLengthCombiner(KEY), split=3)
  names = {key.name: value for key, value in one.items()}
  for layer in range(3):
    expected = layer_sums[0, layer] / layer_sums[1, layer]
    assert names[tfma_metrics.layer_metric_name(layer)] == pytest.approx(expected, rel=1e-6)
  assert tfma_metrics.layer_metric_name(3) not in names
  assert names['code_length'] == pytest.approx(layer_sums[0].sum() / layer_sums[1].sum(), rel=1e-6)
  assert {k.name: v for k, v in three.items()} == pytest.approx(names, rel=1e-12)


def test_missing_model_outputs_fail_with_the_needed_keys():
  combiner = tfma_metrics.CodeLengthCombiner(KEY)
  element = metric_types.StandardMetricInputs({'predictions': {'probs': np.zeros(4)}})
  with pytest.raises(ValueError, match='code_length_bits'):
    combiner.add_input(combiner.create_accumulator(), element)


def _validate(candidate, baseline, max_code_length=1.0):
  """Runs TFMA's validator on our config with a candidate and a baseline code length."""
  config = config_util.update_eval_config_with_defaults(
      eval_config_lib.make_eval_config(max_code_length=max_code_length), has_baseline=True)
  names = {spec.is_baseline: spec.name for spec in config.model_specs}
  key = metric_types.MetricKey(name=tfma_metrics.CODE_LENGTH, model_name=names[False])
  baseline_key = key.make_baseline_key(names[True])
  values = {key: candidate, baseline_key: baseline, key.make_diff_key(): candidate - baseline}
  return metrics_validator.validate_metrics(((), values), config).validation_ok


def test_change_threshold_sign_blesses_equal_or_better_and_rejects_worse():
  assert _validate(0.80, 0.80)  # identical model (re-evaluated after a cache hit): blessed
  assert _validate(0.79, 0.80)
  assert not _validate(0.80 + 1e-9, 0.80)
  assert not _validate(1.05, 1.10)  # better than its baseline but over the absolute bound


def test_the_serving_contract_is_one_light_module_both_sides_read():
  """The export and the evaluator take the signature names and output keys from
  trainer/serving_contract.py, which imports no TensorFlow (so any reader can)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import serving_contract as contract  # pylint: disable=g-import-not-at-top
  (spec,) = eval_config_lib.make_eval_config().model_specs
  assert (spec.signature_name, spec.label_key, list(spec.preprocessing_function_names)) == (
      contract.SERVING_SIGNATURE, contract.LABEL_KEY, [contract.LABELS_SIGNATURE])
  probe = ('import sys; import entropy_coder.trainer.serving_contract; '
           'print(sorted(m for m in sys.modules if m.split(".")[0] in '
           '("tensorflow", "tfx", "tensorflow_model_analysis", "apache_beam")))')
  result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, check=True)
  assert result.stdout.strip() == '[]'
