"""TFMA metrics of an entropy coder: `code_length`, `compression_ratio`, `code_length_layer_NN`.

Why a native TFMA metric (a `tfma.metrics.Metric` with a Beam `CombineFn`) and not a tf_keras
metric: the quantity is a ratio of two sums over the whole eval split,

    code_length = sum(code_length_bits) / sum(num_bits)          [bits per bit]

so codes of different sizes average correctly (a mean of per-example ratios would weigh a
small code like a big one). That per-code mean is emitted beside it, named for what it is
(`code_length_per_code_mean`: each code's bits/bit, every code weighing the same), for
datasets of mixed sizes where the two differ; blessing reads the pooled `code_length`. A CombineFn keeps the two sums exactly (float64) and merges partial
sums across Beam workers; a keras metric would keep float32 state inside a graph.

The model computes its own `code_length_bits` / `num_bits` and per-layer counterparts in its
`serving_default` signature (docs/DESIGN.md), with the same clipping it trains with, so these
metrics read those outputs from the predictions dict instead of re-deriving them from `probs`.

The evaluator loads this class by module path (`MetricConfig(class_name='CodeLength',
module='entropy_coder.pipeline.tfma_metrics')`), so the module must be importable wherever the
Evaluator runs (installed package; in the Kubeflow image too).
"""
from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

# The keys of the model's serving_default outputs that the metric reads.
from entropy_coder.trainer import serving_contract as contract

CODE_LENGTH = 'code_length'
COMPRESSION_RATIO = 'compression_ratio'
PER_CODE_MEAN = 'code_length_per_code_mean'
LAYER_PREFIX = 'code_length_layer_'


def layer_metric_name(layer):
  """`code_length_layer_03`: the original's summary names (docs/ORIGINAL.md §5)."""
  return f'{LAYER_PREFIX}{layer:02d}'


class CodeLength(metric_types.Metric):
  """Bits per bit over the eval split, its inverse, and the same per coded layer.

  One metric class emits all keys because they share the same four sums; a threshold set on
  this metric's MetricConfig applies to `code_length` (its name).
  """

  def __init__(self, name: str = CODE_LENGTH):
    super().__init__(_code_length_computations, name=name)


metric_types.register_metric(CodeLength)


def _code_length_computations(
    name: str = CODE_LENGTH,
    model_names: Optional[List[str]] = None,
    output_names: Optional[List[str]] = None,
    example_weighted: bool = False) -> metric_types.MetricComputations:
  computations = []
  for model_name in model_names or ['']:
    for output_name in output_names or ['']:
      key = metric_types.MetricKey(
          name=name, model_name=model_name, output_name=output_name,
          example_weighted=example_weighted)
      computations.append(
          metric_types.MetricComputation(
              keys=[key],
              preprocessors=[
                  metric_types.StandardMetricInputsPreprocessor(
                      include_filter={}, include_default_inputs=True,
                      model_names=[model_name] if model_name else None)
              ],
              combiner=CodeLengthCombiner(key)))
  return computations


class CodeLengthCombiner(beam.CombineFn):
  """Accumulates [sum code_length_bits, sum num_bits] and the per-layer sums.

  The accumulator is a dict of float64 numpy arrays so partial sums merge exactly in any
  order; the per-layer arrays take their width from the first element seen (the model's
  layer_count), and layers that never held a bit (D / layer_depth < layer_count) emit no key.
  """

  def __init__(self, key: metric_types.MetricKey):
    self._key = key

  def _key_named(self, name):
    return metric_types.MetricKey(
        name=name, model_name=self._key.model_name, output_name=self._key.output_name,
        example_weighted=self._key.example_weighted)

  def create_accumulator(self):
    # bits: [sum code_length_bits, sum num_bits]; codes: [sum of per-code ratios, code count]
    return {'bits': np.zeros(2, np.float64), 'codes': np.zeros(2, np.float64), 'layers': None}

  def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
    predictions = element.get_predictions(self._key.model_name, self._key.output_name)
    if not isinstance(predictions, dict) or contract.CODE_LENGTH_BITS not in predictions:
      raise ValueError(
          f'{CODE_LENGTH} needs the model\'s "{contract.CODE_LENGTH_BITS}" and '
          f'"{contract.NUM_BITS}" '
          f'outputs ({contract.SERVING_SIGNATURE}, docs/DESIGN.md); got predictions of type '
          f'{type(predictions).__name__}'
          + (f' with keys {sorted(predictions)}' if isinstance(predictions, dict) else ''))
    code_bits = np.asarray(predictions[contract.CODE_LENGTH_BITS], np.float64).reshape(-1)
    num_bits = np.asarray(predictions[contract.NUM_BITS], np.float64).reshape(-1)
    accumulator['bits'] += (np.sum(code_bits), np.sum(num_bits))
    held = num_bits > 0
    accumulator['codes'] += (np.sum(code_bits[held] / num_bits[held]), np.count_nonzero(held))
    if contract.LAYER_CODE_LENGTH_BITS in predictions:
      layer_bits = np.asarray(predictions[contract.LAYER_CODE_LENGTH_BITS], np.float64)
      layer_count = layer_bits.shape[-1]
      layers = np.stack([
          layer_bits.reshape(-1, layer_count).sum(axis=0),
          np.asarray(predictions[contract.LAYER_NUM_BITS], np.float64)
          .reshape(-1, layer_count).sum(axis=0)])
      accumulator = self._add_layers(accumulator, layers)
    return accumulator

  @staticmethod
  def _add_layers(accumulator, layers):
    if accumulator['layers'] is None:
      accumulator['layers'] = layers.copy()
    elif accumulator['layers'].shape != layers.shape:
      raise ValueError(f'per-layer outputs changed width from '
                       f'{accumulator["layers"].shape[1]} to {layers.shape[1]} layers')
    else:
      accumulator['layers'] += layers
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[Dict[str, np.ndarray]]):
    accumulators = iter(accumulators)
    result = next(accumulators)
    for accumulator in accumulators:
      result['bits'] += accumulator['bits']
      result['codes'] += accumulator['codes']
      if accumulator['layers'] is not None:
        result = self._add_layers(result, accumulator['layers'])
    return result

  def extract_output(self, accumulator) -> Dict[metric_types.MetricKey, float]:
    code_length_bits, num_bits = accumulator['bits']
    code_length = code_length_bits / num_bits if num_bits else float('nan')
    output = {
        self._key: code_length,
        self._key_named(COMPRESSION_RATIO):
            num_bits / code_length_bits if code_length_bits else float('nan'),
    }
    ratio_sum, codes = accumulator['codes']
    if codes:
      output[self._key_named(PER_CODE_MEAN)] = ratio_sum / codes
    if accumulator['layers'] is not None:
      for layer, (bits, count) in enumerate(accumulator['layers'].T):
        if count > 0:
          output[self._key_named(layer_metric_name(layer))] = bits / count
    return output
