"""The training loop shared by the TFX Trainer (`run_fn`) and `entropy-coder train`.

Faithful to the original's optimisation (docs/ORIGINAL.md §6): Adam with epsilon = 1.0 (unusual, kept
on purpose), learning rate lr0 * decay_rate ^ floor(step / max(samples_per_decay / batch, 1)),
loss = mean code length over layers (bits/bit). Better than the original: a step limit, a
seeded shuffle, an eval split, every step trains (the original's summary steps consumed a
batch without training), checkpoints that resume exactly, and more than one device: one GPU,
several (MirroredStrategy), several machines (MultiWorkerMirroredStrategy when TF_CONFIG names a
cluster), with XLA on GPU; the choice and its log line are `distribute.py`'s.
"""
import contextlib
import dataclasses
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

from entropy_coder.errors import UserError, describe
from entropy_coder.trainer import code_length_ops
from entropy_coder.trainer import data
from entropy_coder.trainer import distribute
from entropy_coder.trainer.distribute import choose_strategy  # noqa: F401 (the pure choice)
from entropy_coder.trainer.model import ProgressiveModel

CHECKPOINT_SUBDIR = 'checkpoints'
LOG_SUBDIR = 'logs'
# The weights of the evaluation with the lowest eval code length, and which step that was: what
# `export` writes (the checkpoints keep the last step, for resuming).
BEST_WEIGHTS_FILE = 'best_eval_weights.npz'
BEST_RECORD_FILE = 'best_eval.json'
# An eval code length more than this fraction above the training one is reported as
# overfitting (`overfitting_note`): the one threshold the train CLI and the pipeline use.
OVERFIT_MARGIN = 0.10
# Beside the exported model: what training reached and which step's weights were exported, for
# the pipeline's summary (pipeline/inspect_runs.py), which sees the model but not the Trainer.
TRAIN_SUMMARY_FILE = 'train_summary.json'


@dataclasses.dataclass(frozen=True)
class BestEval:
  """The evaluation with the lowest eval code length so far: its step and figure."""
  step: int
  eval_code_length: float


def overfitting_note(train_code_length, eval_code_length):
  """A one-line note when the eval code length is more than OVERFIT_MARGIN above the training
  one (the model learned its training codes, not the kind of code), else None."""
  if not (np.isfinite(train_code_length) and np.isfinite(eval_code_length)
          and train_code_length > 0):
    return None
  excess = eval_code_length / train_code_length - 1.0
  if excess <= OVERFIT_MARGIN:
    return None
  return (f'overfitting: eval code length {eval_code_length:.4f} is {100 * excess:.0f} % above '
          f'the training {train_code_length:.4f} bits/bit (threshold {100 * OVERFIT_MARGIN:.0f} %); '
          'train on more codes, evaluate more often (the best evaluation is exported), or set '
          'weight_decay in the train config')


def train_summary(result, best):
  """The TRAIN_SUMMARY_FILE dict: the last step's figures, the exported step, the notes."""
  def number(value):
    return float(value) if np.isfinite(value) else None
  return {'steps': result.steps, 'train_code_length': number(result.train_code_length),
          'eval_code_length': number(result.eval_code_length),
          'exported_step': best.step if best else result.steps,
          'exported_eval_code_length': number(best.eval_code_length if best
                                              else result.eval_code_length),
          'exported': kept_step_line(best, result.steps, result.eval_code_length),
          'overfitting_note': overfitting_note(result.train_code_length, result.eval_code_length)}


def kept_step_line(best, last_step, last_eval):
  """What `Trainer.export` writes, in one line: the best evaluation's step, or the last."""
  if best is None:
    return f'exported the weights of the last step {last_step} (no evaluation)'
  if best.step == last_step:
    return (f'exported the weights of step {last_step}, the last, which had the lowest eval code '
            f'length ({best.eval_code_length:.4f} bits/bit)')
  return (f'exported the weights of step {best.step}, the lowest eval code length '
          f'({best.eval_code_length:.4f} bits/bit), not the last step {last_step} '
          f'(eval {last_eval:.4f})')


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


@dataclasses.dataclass
class TrainResult:
  steps: int  # global step reached
  train_code_length: float  # mean over the last logging window, bits/bit
  eval_code_length: float  # over the whole eval data, bits/bit (nan without eval data)
  eval_per_layer: list
  samples_per_second: float  # training examples (whole codes or tiles) per second
  code_bits_per_second: float = float('nan')  # code bits trained on per second


class Trainer:
  """Owns the model, the optimizer, the checkpoint and the distributed train step.

  `strategy=None` takes this process's placement (distribute.this_process: its GPUs and
  TF_CONFIG); `xla=None` is XLA on GPU replicas, off on CPU. Under a multi-worker strategy every
  worker runs this same code; only the chief writes into `train_dir` (checkpoints, TensorBoard
  logs, the run config, the export) and evaluates; the others save into temporary directories
  that are removed (`temporary_dirs_removed` lists them).
  """

  def __init__(self, model_config, train_config, train_dir, strategy=None, seed=0,
               model_source='the model config', xla=None):
    self.model_config = model_config
    self.model_source = model_source  # how errors name the model config (e.g. its file)
    self.train_config = train_config
    self.train_dir = train_dir
    if strategy is None:
      placement = distribute.this_process(xla)
      strategy, self.xla, self.placement_line = placement.strategy, placement.xla, placement.line
    else:
      self.xla = bool(xla) if xla is not None else any(
          'GPU' in device.upper() for device in distribute.worker_devices(strategy))
      self.placement_line = distribute.describe_given(strategy, self.xla)
    self.strategy = strategy
    self.cluster = distribute.cluster_of(strategy)
    self._dirs = distribute.WriteDirs(self.cluster)
    replicas = strategy.num_replicas_in_sync
    if train_config.batch_size % replicas:
      raise UserError(f'batch_size {train_config.batch_size} must be a multiple of the '
                      f'{replicas} replicas ({self.placement_line}): each replica trains on an '
                      'equal share of the global batch')
    self.seed = seed
    with self.strategy.scope():
      self.model = ProgressiveModel(model_config, seed=seed)
      self.optimizer = make_optimizer(train_config, self.model.trainable_variables)
      self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
    self.checkpoint_dir = os.path.join(train_dir, CHECKPOINT_SUBDIR)
    # The chief's manager writes train_dir/checkpoints; another worker's is made per save, in
    # a temporary directory (`_save`).
    self.manager = self._manager(self.checkpoint_dir) if self.is_chief else None
    self._train_step = None
    self._evaluate_batch = None
    self.best = None  # BestEval of this run (chief only): `export` writes its weights
    self.summary = None  # after fit: `train_summary`, written beside the export

  @property
  def is_chief(self):
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    return self._dirs.is_chief

  @property
  def temporary_dirs_removed(self):
    return list(self._dirs.removed)

  def _manager(self, directory):
    return tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=5, step_counter=self.optimizer.iterations,
        checkpoint_interval=None)

  def _save(self, step):
    """Every worker saves (a save may run collective ops); only the chief's save is kept."""
    if self.is_chief:
      self.manager.save(checkpoint_number=step)
      return
    temporary = self._dirs.temporary()
    try:
      self._manager(os.path.join(temporary, CHECKPOINT_SUBDIR)).save(checkpoint_number=step)
    finally:
      self._dirs.remove(temporary)

  def write_run_config(self):
    """The configs beside the checkpoints (chief only)."""
    if self.is_chief:
      write_run_config(self.train_dir, self.model_config, self.train_config)

  def export(self, export_dir):
    """Exports the model directory (export.export_model) on the chief; another worker exports
    into a temporary directory that is removed. Then all workers meet (a collective), so that
    when any of them returns the chief's export is complete. -> export_dir, or None."""
    from entropy_coder.trainer import export as export_lib  # pylint: disable=g-import-not-at-top
    if self.is_chief:
      with self.best_weights():
        export_lib.export_model(self.model, export_dir)
      if self.summary is not None:
        with tf.io.gfile.GFile(os.path.join(export_dir, TRAIN_SUMMARY_FILE), 'w') as f:
          f.write(json.dumps(self.summary, indent=2))
    else:
      temporary = self._dirs.temporary()
      try:
        export_lib.export_model(self.model, os.path.join(temporary, 'model'))
      finally:
        self._dirs.remove(temporary)
    self.barrier()
    return export_dir if self.is_chief else None

  def barrier(self):
    """Returns when every worker got here (an all-reduce); immediate with one worker."""
    if self.cluster is None:
      return
    strategy = self.strategy

    @tf.function(autograph=False)
    def meet():
      ones = strategy.run(lambda: tf.ones([]))
      return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    meet()

  @property
  def step(self):
    return int(self.optimizer.iterations.numpy())

  def _best_path(self, name):
    return os.path.join(self.train_dir, name)

  def _note_eval(self, step, length):
    """Keeps the weights of an evaluation that beats every earlier one (chief only), on disk
    beside the checkpoints, so that a resumed run still knows its best."""
    if not np.isfinite(length) or (self.best is not None and length >= self.best.eval_code_length):
      return
    import io  # pylint: disable=g-import-not-at-top
    buffer = io.BytesIO()
    np.savez(buffer, **{name: variable.numpy()
                        for name, variable in self.model.named_variables_by_name().items()})
    tf.io.gfile.makedirs(self.train_dir)
    with tf.io.gfile.GFile(self._best_path(BEST_WEIGHTS_FILE), 'wb') as f:
      f.write(buffer.getvalue())
    self.best = BestEval(int(step), float(length))
    with tf.io.gfile.GFile(self._best_path(BEST_RECORD_FILE), 'w') as f:
      f.write(json.dumps(dataclasses.asdict(self.best)))

  def _restore_best(self):
    path = self._best_path(BEST_RECORD_FILE)
    if self.is_chief and tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        self.best = BestEval(**json.loads(f.read()))

  @contextlib.contextmanager
  def best_weights(self):
    """The model holds the best evaluation's weights inside, its own again after."""
    if self.best is None or self.best.step == self.step:
      yield
      return
    variables = self.model.named_variables_by_name()
    current = {name: variable.numpy() for name, variable in variables.items()}
    import io  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(self._best_path(BEST_WEIGHTS_FILE), 'rb') as f:
      with np.load(io.BytesIO(f.read()), allow_pickle=False) as best:
        for name, variable in variables.items():
          variable.assign(best[name])
    try:
      yield
    finally:
      for name, variable in variables.items():
        variable.assign(current[name])

  def restore(self):
    """Resumes from the newest checkpoint in train_dir, if any. Returns the step reached."""
    latest = tf.train.latest_checkpoint(self.checkpoint_dir)  # the chief's, on every worker
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    self._restore_best()
    return self.step

  def _build_step(self):
    """One optimisation step on a (distributed) batch; returns the global mean loss."""
    strategy = self.strategy
    replicas = strategy.num_replicas_in_sync

    def loss_and_gradients(bits):
      with tf.GradientTape() as tape:
        probs = self.model(2.0 * bits - 1.0, training=True)
        coded = bits[..., :tf.shape(probs)[-1]]
        loss = code_length_ops.code_length(coded, probs)
        # Each replica holds an equal share of the global batch: scaling by 1/replicas makes
        # the all-reduced (summed) gradient that of the global batch mean.
        scaled = (loss + self._weight_penalty()) / replicas
      return loss, tape.gradient(scaled, self.model.trainable_variables)

    if self.xla:
      # XLA compiles the forward and backward pass of one replica. The all-reduce and Adam's
      # update stay outside: apply_gradients synchronises the replicas (merge_call), which
      # cannot run inside a nested, compiled function.
      loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True, autograph=False)

    def replica_step(bits):
      loss, grads = loss_and_gradients(bits)
      # The weights of layers a code does not have get no gradient (trainer/static_forward.py
      # uses only the code's layers) and no update, as with a zero gradient and zero moments.
      self.optimizer.apply_gradients([(grad, variable) for grad, variable
                                      in zip(grads, self.model.trainable_variables)
                                      if grad is not None])
      return loss

    @tf.function(autograph=False)
    def step(bits):
      losses = strategy.run(replica_step, args=(bits,))
      return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    return step

  def _weight_penalty(self):
    """weight_decay * the sum of squared (masked) kernel weights; 0.0 without weight decay."""
    decay = self.train_config.weight_decay
    if not decay:
      return 0.0
    kernels = [self.model.weight(name) for name in self.model.named_variables_by_name()
               if name.endswith('kernel')]
    return decay * tf.add_n([tf.reduce_sum(tf.square(kernel)) for kernel in kernels])

  def train_step(self, distributed_batch):
    if self._train_step is None:
      self._train_step = self._build_step()
    return self._train_step(distributed_batch)

  def evaluate(self, patterns, batch_size=None, max_batches=None):
    """(bits/bit, per-layer bits/bit) over every eval record, pooled: total -log2 p over total
    coded bits. Whole codes of any mix of shapes, batched by exact shape (data.eval_dataset)."""
    dataset, shapes = data.eval_dataset(patterns, batch_size or self.train_config.batch_size)
    source = data.list_files(patterns)[0]
    for depth in sorted({shape[-1] for shape in shapes}):
      self.model_config.coded_depth(depth, source, self.model_source)
    if self._evaluate_batch is None:  # traced once per Trainer, for every batch and H x W
      # Shapeless: whole codes of any size take the model's tf.scan path (one trace; the
      # unrolled static-shape path would unroll every code's rows anew for each shape).
      layer_depth = self.model_config.layer_depth
      self._evaluate_batch = tf.function(
          lambda bits: _batch_code_lengths(self.model, bits, layer_depth), autograph=False,
          input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
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
    shapes = check_data(self.model_config, train_patterns, eval_patterns, self.model_source)
    start_step = self.restore()
    train_config = self.train_config
    dataset, described = training_dataset(train_patterns, train_config, self.seed, start_step,
                                          shapes)
    distributed = iter(self.strategy.experimental_distribute_dataset(_shard_by_data(dataset)))
    writer = (tf.summary.create_file_writer(os.path.join(self.train_dir, LOG_SUBDIR))
              if self.is_chief else tf.summary.create_noop_writer())
    progress(self.placement_line)
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    rate, bit_rate, last_loss, window_bits = 0.0, float('nan'), float('nan'), 0
    progress(f'training from step {start_step} to {steps}: batch {train_config.batch_size}, '
             f'{described}, {self.strategy.num_replicas_in_sync} replica(s)')
    with writer.as_default():
      while self.step < steps:
        batch = _next_batch(distributed, train_patterns, self.step)
        loss = float(self.train_step(batch))
        window_bits += self._global_bits(batch)
        window_loss += loss
        window_steps += 1
        step = self.step
        if step % log_every == 0 or step == steps:
          elapsed = time.perf_counter() - window_start
          rate = window_steps * train_config.batch_size / max(elapsed, 1e-9)
          bit_rate = window_bits / max(elapsed, 1e-9)
          last_loss = window_loss / window_steps
          learning_rate = float(self.optimizer._decayed_lr(tf.float32))  # pylint: disable=protected-access
          tf.summary.scalar('loss', last_loss, step=step)
          tf.summary.scalar('learning_rate', learning_rate, step=step)
          tf.summary.scalar('samples_per_second', rate, step=step)
          progress(f'step {step}/{steps}  loss {last_loss:.4f} bits/bit  '
                   f'lr {learning_rate:.3g}  {rate:.0f} samples/s')
          window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
          window_bits = 0
        if eval_patterns and eval_every and step % eval_every == 0 and step < steps:
          self._log_eval(eval_patterns, step, progress)
          window_start = time.perf_counter()
      self._save(self.step)  # before the final evaluation, which then saves nothing more
      eval_length, eval_layers = float('nan'), []
      if eval_patterns:
        eval_length, eval_layers = self._log_eval(eval_patterns, self.step, progress, save=False)
    writer.flush()
    result = TrainResult(self.step, last_loss, eval_length, eval_layers, rate, bit_rate)
    self.summary = train_summary(result, self.best)
    return result

  def _global_bits(self, batch):
    """Code bits in a global batch (its replicas here, scaled to all replicas)."""
    local = self.strategy.experimental_local_results(batch)
    bits = sum(int(np.prod(part.shape)) for part in local)
    return bits * self.strategy.num_replicas_in_sync // max(len(local), 1)

  def _log_eval(self, eval_patterns, step, progress, save=True):
    """The chief evaluates (the other workers would compute the same figures) and logs; every
    worker then saves (unless `save` is False)."""
    length, per_layer = float('nan'), []
    if self.is_chief:
      length, per_layer = self.evaluate(eval_patterns)
      tf.summary.scalar('eval/code_length', length, step=step)
      for k, value in enumerate(per_layer):
        tf.summary.scalar(f'eval/code_length_layer_{k:02d}', value, step=step)
      progress(f'step {step}: eval code length {length:.4f} bits/bit '
               f'(per layer {", ".join(f"{v:.4f}" for v in per_layer)})')
      self._note_eval(step, length)
    if save:
      self._save(step)
    return length, per_layer


def check_data(model_config, train_patterns, eval_patterns=None, model_source='the model config'):
  """Before any training: the train (and eval) files exist, their first record is a readable
  code, every record's code_shape is valid, the codes of a split share one depth and that
  depth fits the model (config.code_layers, the codec's check); H x W may differ. -> the train
  codes' shapes. One-line UserErrors naming the file and the model config."""
  train_shapes = None
  for patterns in (train_patterns, eval_patterns):
    if not patterns:
      continue
    shapes, files, _, _ = data.code_shapes(patterns)
    depths = sorted({shape[-1] for shape in shapes})
    if len(depths) > 1:
      raise UserError(describe(files[0], f'codes of depths {depths} in one split; all codes of a '
                               'dataset must share one depth (H x W may differ)'))
    model_config.coded_depth(depths[0], files[0], model_source)
    train_shapes = train_shapes or shapes
  return train_shapes


def training_dataset(patterns, train_config, seed, skip_batches=0, shapes=None):
  """The endless, seeded training batches and a phrase saying what they hold.

  Whole codes when the data has one shape and `crop` does not cut it (the original's case);
  otherwise per-epoch tilings (data.training_tiles) that cover every bit of every code each
  epoch. `skip_batches` continues a resumed run where it stopped. `shapes`: every record's
  shape when check_data just read them (saves a second pass over the records).
  """
  if shapes is None:
    shapes = data.code_shapes(patterns)[0]
  files = data.list_files(patterns)
  _, packed, compression = data.first_code(files)
  tile = data.tile_size(shapes, train_config.crop)
  if tile is None:
    dataset, shape = data.code_dataset(files, train_config.batch_size, shuffle_seed=seed,
                                       repeat=True, drop_remainder=True, skip_batches=skip_batches)
    return dataset, f'code shape {list(shape)}'
  dataset = data.training_tiles(files, packed, compression, shapes[0][2],
                                train_config.batch_size, tile, seed)
  if skip_batches:
    dataset = dataset.skip(skip_batches)
  kinds = len(set(shapes))
  return (dataset.prefetch(tf.data.AUTOTUNE),
          f'{len(shapes)} codes of {kinds} shape(s) in tiles of up to {tile}x{tile}')


def _shard_by_data(dataset):
  """Each worker reads every record and keeps its own share of each global batch.

  TF's default (AUTO) would shard by FILE when there are at least as many files as workers:
  each worker would then shuffle its own files, and the training would depend on the worker
  count. By DATA, every worker builds the same seeded global batches and
  experimental_distribute_dataset hands replica r its r-th equal slice of each, so N workers
  train on exactly the batches one process trains on (the cost: each worker reads and parses
  all records; the model's compute, by far the larger part, is what is split).
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options)


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
  sums = tf.reduce_sum(code_length_ops.per_layer_code_length_bits(coded, probs, layer_depth), 0)
  shape = tf.shape(coded)
  count = tf.cast(shape[0] * shape[1] * shape[2] * layer_depth, tf.float64)
  return tf.cast(sums, tf.float64), tf.fill(tf.shape(sums), count)


def _print_progress(line):
  print(line, file=sys.stderr, flush=True)


def write_run_config(train_dir, model_config, train_config):
  """Like the original's chief, keep the configs beside the checkpoints. Through tf.io.gfile,
  as the checkpoints: a TFX model_run_dir on Vertex is a gs:// URI."""
  tf.io.gfile.makedirs(train_dir)
  for name, config in (('model_config.json', model_config), ('train_config.json', train_config)):
    with tf.io.gfile.GFile(os.path.join(train_dir, name), 'w') as f:
      f.write(json.dumps(config.to_dict(), indent=2))
