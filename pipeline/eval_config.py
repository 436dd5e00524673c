"""The Evaluator's TFMA config: which signature, which metrics, and when a model is blessed.

Blessing rule (both must hold):
* absolute: `code_length <= max_code_length` bits per bit (default 1.0: never worse than storing
  the bits as they are);
* change, only when a baseline (the latest blessed model) exists:
  `code_length(candidate) - code_length(baseline) <= change_tolerance`.

Why the tolerance is `+0.0` and not negative: TFMA 0.47 checks a LOWER_IS_BETTER change
threshold as `diff <= absolute` with `diff = candidate - baseline`
(`tensorflow_model_analysis/evaluators/metrics_validator.py`). The sign is the one thing to
get right: a NEGATIVE absolute would demand a strict improvement and so reject a candidate
identical to the baseline (e.g. the same model re-evaluated after a cache hit); a positive one
would bless a slightly worse model. 0 means "no worse than the baseline". tests/
tests/test_metrics_combiner.py pins this down against TFMA's own validator.
"""
import tensorflow_model_analysis as tfma

from entropy_coder import push_gates
from entropy_coder.pipeline import tfma_metrics
from entropy_coder.trainer import serving_contract as contract


def make_eval_config(max_code_length: float = push_gates.DEFAULT_MAX_CODE_LENGTH,
                     change_tolerance: float = push_gates.DEFAULT_CHANGE_TOLERANCE
                     ) -> tfma.EvalConfig:
  """EvalConfig over the whole eval split (one overall slice) with the blessing thresholds.

  The label is the code itself: the labels signature turns the serialized examples into
  {LABEL_KEY: [B, N]}, which TFMA uses as the label (serving_contract names both).
  No `prediction_key`: the metric reads several outputs of `serving_default` (the bit counts
  overall and per layer), so TFMA keeps the whole predictions dict.
  """
  threshold = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(upper_bound={'value': max_code_length}),
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.LOWER_IS_BETTER,
          absolute={'value': change_tolerance}))
  return tfma.EvalConfig(
      model_specs=[
          tfma.ModelSpec(
              signature_name=contract.SERVING_SIGNATURE,
              label_key=contract.LABEL_KEY,
              preprocessing_function_names=[contract.LABELS_SIGNATURE])
      ],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[
          tfma.MetricsSpec(metrics=[
              tfma.MetricConfig(class_name='ExampleCount'),
              tfma.MetricConfig(
                  class_name=tfma_metrics.CodeLength.__name__,
                  module=tfma_metrics.__name__,
                  threshold=threshold),
          ])
      ])
