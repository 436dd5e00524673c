"""The code length of an input's codes under a model directory: total, per code and per layer.

What `entropy-coder code-length` computes (the command formats and plots it). The model is
rebuilt from the model directory's `weights.npz` and config (the same files the codec uses), so
the figure is the one the real bitstream is compared with. (Not `Trainer.evaluate` of
trainer/train_loop.py, which measures the eval split during training.)
"""
import os
import sys

import numpy as np
import tensorflow as tf

from entropy_coder import codes_format, model_files
from entropy_coder.errors import UserError
from entropy_coder.trainer import code_length_ops
from entropy_coder.trainer.config import model_config_from_dict
from entropy_coder.trainer.model import ProgressiveModel

_BATCH = 64


def load_model(path):
  """Model directory (any form model_files accepts) -> (ProgressiveModel, ModelFiles)."""
  files = model_files.read_model_files(path)
  model = ProgressiveModel(model_config_from_dict(files.model_config, files.path))
  try:
    model.set_named_weights(files.weights, os.path.join(files.path, model_files.WEIGHTS_NPZ))
  except ValueError as e:
    raise UserError(str(e)) from None
  return model, files


def read_codes(path):
  """[(source, [H, W, D] code)] from a .npz file or TFRecord file(s)/glob, told by content."""
  return codes_format.read_codes(path)[0]


def read_codes_for(path, layer_depth, model='the model', warn=None):
  """read_codes, and a warning (to `warn`, default stderr) when a .npz's own layer_depth is
  not the model's (codes_format.layer_depth_warning)."""
  codes, _, file_layer_depth = codes_format.read_codes(path)
  text = codes_format.layer_depth_warning(path, file_layer_depth, layer_depth, model)
  if text:
    (warn or (lambda line: print(line, file=sys.stderr, flush=True)))(text)
  return codes


def per_layer_bits(model, codes):
  """Summed -log2 p per (code, layer): float64 [N, L_coded], codes batched by shape."""
  layer_depth = model.config.layer_depth

  @tf.function(autograph=False)
  def layer_sums(bits):
    probs = model(2.0 * bits - 1.0)
    coded = bits[..., :tf.shape(probs)[-1]]
    return code_length_ops.per_layer_code_length_bits(coded, probs, layer_depth)

  results = [None] * len(codes)
  by_shape = {}
  for index, (_, bits) in enumerate(codes):
    by_shape.setdefault(bits.shape, []).append(index)
  for indices in by_shape.values():
    for start in range(0, len(indices), _BATCH):
      chunk = indices[start:start + _BATCH]
      batch = np.stack([codes[i][1] for i in chunk]).astype(np.float32)
      sums = layer_sums(tf.constant(batch)).numpy().astype(np.float64)
      for i, row in zip(chunk, sums):
        results[i] = row
  return results


def code_length_of_input(model_path, input_path):
  """Total and per-layer code length of every code in `input_path`, as a JSON-able dict."""
  model, files = load_model(model_path)
  config = model.config
  codes = read_codes_for(input_path, config.layer_depth, f'the model at {files.path}')
  for source, bits in codes:
    config.coded_depth(bits.shape[-1], source, f'the model at {files.path}')
  sums = per_layer_bits(model, codes)
  layers = max(len(row) for row in sums)
  layer_bits, layer_counts = np.zeros(layers), np.zeros(layers)
  for (_, bits), row in zip(codes, sums):
    layer_bits[:len(row)] += row
    layer_counts[:len(row)] += bits.shape[0] * bits.shape[1] * config.layer_depth
  total_bits, num_bits = float(layer_bits.sum()), float(layer_counts.sum())
  bits_per_bit = total_bits / num_bits  # pooled: every bit weighs the same
  per_code = [float(row.sum()) / (bits.shape[0] * bits.shape[1] * config.layer_depth * len(row))
              for (_, bits), row in zip(codes, sums)]
  return {
      'model': files.path,
      'input': input_path,
      'samples': len(codes),
      'shapes': len({bits.shape for _, bits in codes}),
      'coded_bits': int(num_bits),
      'total_bits': total_bits,
      'bits_per_bit': bits_per_bit,
      # Each code's bits/bit, averaged with every code weighing the same (a small code counts
      # as much as a large one): beside the pooled figure, not instead of it.
      'mean_code_bits_per_bit': float(np.mean(per_code)),
      'per_code_bits_per_bit': per_code,
      'compression_ratio': 1.0 / bits_per_bit,
      'per_layer': [{'layer': k, 'bits': float(layer_bits[k]), 'num_bits': int(layer_counts[k]),
                     'bits_per_bit': float(layer_bits[k] / layer_counts[k])}
                    for k in range(layers)],
  }

