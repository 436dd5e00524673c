"""Test helpers: write codes as TFRecords of our Examples, locate the reference fixture.

The reference fixture (tests/data/reference/, described in its README.md) is the 2017 TF1 model
trained here: its weights, 8 held-out samples and its probabilities on them. It lives in the
repository so that a fresh clone tests everything.
"""
import os

import numpy as np

from entropy_coder import codes_format

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DIR = os.path.join(REPO, 'tests', 'data', 'reference')


def write_tfrecord(path, codes, gzip=True):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options='GZIP' if gzip else None) as writer:
    for code in codes:
      writer.write(codes_format.encode_example(np.asarray(code, np.uint8)))
  return path


def write_examples_dir(root, train_codes, eval_codes):
  """An Examples-artifact-shaped directory: Split-train/, Split-eval/ of GZIP TFRecords."""
  write_tfrecord(os.path.join(root, 'Split-train', 'data.gz'), train_codes)
  write_tfrecord(os.path.join(root, 'Split-eval', 'data.gz'), eval_codes)
  return root


# The model and training of the end-to-end pipeline runs (local and compiled for Kubeflow): two
# layers trained at a high rate, so that a few steps make a model the gates can bless.
E2E_MODEL_CONFIG = {'layer_depth': 2, 'layer_count': 2}
E2E_TRAIN_CONFIG = {'batch_size': 8, 'learning_rate': 0.05, 'decay_rate': 0.9,
                    'samples_per_decay': 20000}

# README.md's claim: the model (Keras, numpy reference and codec engine) reproduces the 2017
# probabilities to this absolute tolerance on the reference samples (measured: 5.1e-7 for Keras on TF-CPU).
README_FIDELITY = 1e-6


def causal_reference_model(model, model_dir, seed, scale=0.5):
  """The reference ModelFiles `model` made channel-causal: random channel_ar kernels (seeded; the
  network masks them to j < c), written at `model_dir` and read back."""
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  weights = dict(model.weights)
  for k in range(model.model_config['layer_count']):
    weights[f'layer{k}/brnn/channel_ar/kernel'] = rng.normal(0, scale, (2, 2, 4)).astype(np.float32)
  model_files.write_model_files(model_dir, weights, dict(model.model_config, channel_causal=True))
  return model_files.read_model_files(model_dir)


def reference_model(model_dir):
  """The reference weights (layer_depth 2, 8 layers) written as a model directory at
  `model_dir` and read back: the ModelFiles the codec tests code with."""
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  weights = dict(np.load(os.path.join(REFERENCE_DIR, 'weights_step25284.npz'), allow_pickle=False))
  model_files.write_model_files(model_dir, weights, {'layer_depth': 2, 'layer_count': 8})
  return model_files.read_model_files(model_dir)
