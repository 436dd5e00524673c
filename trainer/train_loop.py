"""The training loop shared by the TFX Trainer (`run_fn`) and `entropy-coder train`.

Faithful to the original's optimisation (docs/ORIGINAL.md §6): Adam with epsilon = 1.0 (unusual, kept
on purpose), learning rate lr0 * decay_rate ^ floor(step / max(samples_per_decay / batch, 1)),
loss = mean code length over layers (bits/bit). Better than the original: a step limit, a
seeded shuffle, an eval split, every step trains (the original's summary steps consumed a
batch without training), checkpoints that resume exactly, and more than one GPU when present.
"""
import dataclasses
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

from entropy_coder.errors import UserError, describe
from entropy_coder.trainer import code_length as code_length_lib
from entropy_coder.trainer import data
from entropy_coder.trainer.model import ProgressiveModel

CHECKPOINT_SUBDIR = 'checkpoints'
LOG_SUBDIR = 'logs'


def learning_rate_schedule(train_config):
  """Staircase exponential decay, exactly the original's `exponential_decay(staircase=True)`."""
  return keras.optimizers.schedules.ExponentialDecay(
      initial_learning_rate=train_config.learning_rate,
      decay_steps=train_config.decay_steps,
      decay_rate=train_config.decay_rate,
      staircase=True)


def make_optimizer(train_config, variables):
  """Adam(epsilon=1.0 unless the config says otherwise) as the original's tf.train.AdamOptimizer: the legacy Keras Adam runs the
  same fused ResourceApplyAdam kernel per variable. (The new Keras optimizer traces ~10 ops per
  variable: 127 variables made the first step take ~30 s to trace on 2 cores.) Slots are
  created here, before any tf.function, so the train step traces once.
  """
  optimizer = keras.optimizers.legacy.Adam(
      learning_rate=learning_rate_schedule(train_config), epsilon=train_config.adam_epsilon)
  optimizer._create_all_weights(variables)  # pylint: disable=protected-access
  return optimizer


def choose_strategy():
  """MirroredStrategy over the GPUs when there are several, else the default (one device)."""
  gpus = tf.config.list_logical_devices('GPU')
  if len(gpus) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


@dataclasses.dataclass
class TrainResult:
  steps: int  # global step reached
  train_code_length: float  # mean over the last logging window, bits/bit
  eval_code_length: float  # over the whole eval data, bits/bit (nan without eval data)
  eval_per_layer: list
  samples_per_second: float


class Trainer:
  """Owns the model, the optimizer, the checkpoint and the distributed train step."""

  def __init__(self, model_config, train_config, train_dir, strategy=None, seed=0,
               model_source='the model config'):
    self.model_config = model_config
    self.model_source = model_source  # how errors name the model config (e.g. its file)
    self.train_config = train_config
    self.train_dir = train_dir
    self.strategy = strategy or choose_strategy()
    self.seed = seed
    with self.strategy.scope():
      self.model = ProgressiveModel(model_config, seed=seed)
      self.optimizer = make_optimizer(train_config, self.model.trainable_variables)
      self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(train_dir, CHECKPOINT_SUBDIR), max_to_keep=5,
        step_counter=self.optimizer.iterations, checkpoint_interval=None)
    self._train_step = None
    self._evaluate_batch = None

  @property
  def step(self):
    return int(self.optimizer.iterations.numpy())

  def restore(self):
    """Resumes from the newest checkpoint in train_dir, if any. Returns the step reached."""
    latest = self.manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    return self.step

  def _build_step(self):
    """One optimisation step on a (distributed) batch; returns the global mean loss."""
    strategy = self.strategy
    replicas = strategy.num_replicas_in_sync

    def replica_step(bits):
      with tf.GradientTape() as tape:
        probs = self.model(2.0 * bits - 1.0, training=True)
        coded = bits[..., :tf.shape(probs)[-1]]
        loss = code_length_lib.code_length(coded, probs)
        # Each replica holds an equal share of the global batch: scaling by 1/replicas makes
        # the all-reduced (summed) gradient that of the global batch mean.
        scaled = loss / replicas
      grads = tape.gradient(scaled, self.model.trainable_variables)
      self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
      return loss

    @tf.function(autograph=False)
    def step(bits):
      losses = strategy.run(replica_step, args=(bits,))
      return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    return step

  def train_step(self, distributed_batch):
    if self._train_step is None:
      self._train_step = self._build_step()
    return self._train_step(distributed_batch)

  def evaluate(self, patterns, batch_size=None, max_batches=None):
    """(bits/bit, per-layer bits/bit) over every eval record, weighted by bits."""
    dataset, shape = data.code_dataset(patterns, batch_size or self.train_config.batch_size)
    self.model_config.coded_depth(shape[-1], data.list_files(patterns)[0], self.model_source)
    if self._evaluate_batch is None:  # traced once per Trainer, not once per evaluation
      layer_depth = self.model_config.layer_depth
      self._evaluate_batch = tf.function(
          lambda bits: _batch_code_lengths(self.model, bits, layer_depth), autograph=False)
    evaluate_batch = self._evaluate_batch
    layer_sums, layer_counts = 0.0, 0.0
    for index, bits in enumerate(dataset):
      if max_batches is not None and index >= max_batches:
        break
      sums, counts = evaluate_batch(bits)
      layer_sums, layer_counts = layer_sums + sums.numpy(), layer_counts + counts.numpy()
    if not np.sum(layer_counts):
      return float('nan'), []
    return float(np.sum(layer_sums) / np.sum(layer_counts)), (layer_sums / layer_counts).tolist()

  def fit(self, train_patterns, steps, eval_patterns=None, log_every=100, eval_every=0,
          progress=None):
    """Trains until the global step reaches `steps` (resuming), logging to TensorBoard."""
    progress = progress or _print_progress
    if log_every < 1:
      raise UserError(f'log_every must be at least 1, got {log_every}')
    if eval_every < 0:
      raise UserError(f'eval_every must be 0 (only at the end) or positive, got {eval_every}')
    # Everything that can be wrong with the data is found now, not after training.
    check_data(self.model_config, train_patterns, eval_patterns, self.model_source)
    start_step = self.restore()
    train_config = self.train_config
    dataset, shape = data.code_dataset(train_patterns, train_config.batch_size,
                                       shuffle_seed=self.seed, repeat=True, drop_remainder=True,
                                       skip_batches=start_step)
    distributed = iter(self.strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(os.path.join(self.train_dir, LOG_SUBDIR))
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    rate, last_loss = 0.0, float('nan')
    progress(f'training from step {start_step} to {steps}: batch {train_config.batch_size}, '
             f'code shape {list(shape)}, {self.strategy.num_replicas_in_sync} replica(s)')
    with writer.as_default():
      while self.step < steps:
        loss = float(self.train_step(_next_batch(distributed, train_patterns, self.step)))
        window_loss += loss
        window_steps += 1
        step = self.step
        if step % log_every == 0 or step == steps:
          elapsed = time.perf_counter() - window_start
          rate = window_steps * train_config.batch_size / max(elapsed, 1e-9)
          last_loss = window_loss / window_steps
          learning_rate = float(self.optimizer._decayed_lr(tf.float32))  # pylint: disable=protected-access
          tf.summary.scalar('loss', last_loss, step=step)
          tf.summary.scalar('learning_rate', learning_rate, step=step)
          tf.summary.scalar('samples_per_second', rate, step=step)
          progress(f'step {step}/{steps}  loss {last_loss:.4f} bits/bit  '
                   f'lr {learning_rate:.3g}  {rate:.0f} samples/s')
          window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        if eval_patterns and eval_every and step % eval_every == 0 and step < steps:
          self._log_eval(eval_patterns, step, progress)
          window_start = time.perf_counter()
      self.manager.save(checkpoint_number=self.step)
      eval_length, eval_layers = float('nan'), []
      if eval_patterns:
        eval_length, eval_layers = self._log_eval(eval_patterns, self.step, progress)
    writer.flush()
    return TrainResult(self.step, last_loss, eval_length, eval_layers, rate)

  def _log_eval(self, eval_patterns, step, progress):
    length, per_layer = self.evaluate(eval_patterns)
    tf.summary.scalar('eval/code_length', length, step=step)
    for k, value in enumerate(per_layer):
      tf.summary.scalar(f'eval/code_length_layer_{k:02d}', value, step=step)
    progress(f'step {step}: eval code length {length:.4f} bits/bit '
             f'(per layer {", ".join(f"{v:.4f}" for v in per_layer)})')
    self.manager.save(checkpoint_number=step)
    return length, per_layer


def check_data(model_config, train_patterns, eval_patterns=None, model_source='the model config'):
  """Before any training: the train (and eval) files exist, their first record is a readable
  code, and its depth fits the model (config.code_layers, the codec's check). -> the train
  code shape. One-line UserErrors naming the file and the model config."""
  shape = None
  for patterns in (train_patterns, eval_patterns):
    if not patterns:
      continue
    files = data.list_files(patterns)
    first_shape = data.first_code(files)[0]
    model_config.coded_depth(first_shape[-1], files[0], model_source)
    shape = shape or tuple(first_shape)
  return shape


def _next_batch(distributed, patterns, step):
  """The next training batch; a record found damaged mid-run is a one-line UserError."""
  try:
    return next(distributed)
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    text = ' '.join((e.message or type(e).__name__).split())
    raise UserError(describe(', '.join([patterns] if isinstance(patterns, str) else patterns),
                             f'bad training record at step {step} ({text[:300]})')) from None


def _batch_code_lengths(model, bits, layer_depth):
  """Per-layer (summed -log2 p, bit count) of a batch, for weighted averages."""
  probs = model(2.0 * bits - 1.0)
  coded = bits[..., :tf.shape(probs)[-1]]
  sums = tf.reduce_sum(code_length_lib.per_layer_code_length_bits(coded, probs, layer_depth), 0)
  shape = tf.shape(coded)
  count = tf.cast(shape[0] * shape[1] * shape[2] * layer_depth, tf.float64)
  return tf.cast(sums, tf.float64), tf.fill(tf.shape(sums), count)


def _print_progress(line):
  print(line, file=sys.stderr, flush=True)


def write_run_config(train_dir, model_config, train_config):
  """Like the original's chief, keep the configs beside the checkpoints."""
  os.makedirs(train_dir, exist_ok=True)
  for name, config in (('model_config.json', model_config), ('train_config.json', train_config)):
    with open(os.path.join(train_dir, name), 'w', encoding='utf-8') as f:
      json.dump(config.to_dict(), f, indent=2)
