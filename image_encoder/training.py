"""Training of the image encoder: seeded random crops, a resumable loop, the PSNR table.

* Pictures: the user's files, or by default the photographs shipped in installed packages
  (entropy_coder.data_gen.sample_images) except HELD_OUT, which the evaluation uses: the
  PSNR table is always on a picture the encoder never saw.
* Crops: batch `step` is cut from the pictures by `numpy.random.default_rng([seed, step])`, and
  the stochastic binariser draws from the stateless seed (seed, step): a resumed run trains on
  exactly the batches an uninterrupted one would have.
* Checkpoints (networks, optimiser, step) every `save_every` steps and at the end under
  `<dir>/checkpoints/`; running again with the same directory continues from the newest.
"""
import os
import sys
import time

import numpy as np

from entropy_coder.data_gen import sample_images
from entropy_coder.errors import UserError, describe
from entropy_coder.image_encoder import config as config_lib
from entropy_coder.image_encoder import files

HELD_OUT = 'grace_hopper'
_PROGRESS_EVERY = 25


def default_training_pictures():
  """[(name, uint8 gray)] of the packaged pictures except HELD_OUT."""
  return [(photo.name, sample_images.gray(photo.pixels))
          for photo in sample_images.packaged_photos()
          if photo.name != HELD_OUT]


def default_eval_pictures():
  return [(photo.name, sample_images.gray(photo.pixels))
          for photo in sample_images.packaged_photos((HELD_OUT,))]


def read_pictures(inputs):
  """Files and directories of pictures -> [(path, uint8 gray)], each checked now."""
  return [(path, files.read_gray(path)) for path in files.expand_inputs(inputs)]


def crop_batch(pictures, config, step):
  """The float [batch, crop, crop, 1] batch of training step `step` (seeded by (seed, step)).
  Pictures smaller than a crop are padded by edge replication first."""
  from entropy_coder.image_encoder import model  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng([config.seed, step])
  size = config.crop_size
  batch = np.empty((config.batch_size, size, size, 1), np.float32)
  for i in range(config.batch_size):
    gray = pictures[int(rng.integers(len(pictures)))][1]
    height, width = gray.shape
    if height < size or width < size:
      gray = np.pad(gray, ((0, max(size - height, 0)), (0, max(size - width, 0))), mode='edge')
      height, width = gray.shape
    y = int(rng.integers(height - size + 1))
    x = int(rng.integers(width - size + 1))
    crop = gray[y:y + size, x:x + size]
    if rng.integers(2):
      crop = crop[:, ::-1]
    batch[i, :, :, 0] = model.to_unit(crop)
  return batch


def evaluate(encoder, pictures):
  """PSNR per iteration (mean over `pictures`, each coded whole) and bits per pixel.

  -> {'pictures': names, 'psnr_db': [per iteration], 'bits_per_pixel': [per iteration]}."""
  from entropy_coder.image_encoder import api  # pylint: disable=import-outside-toplevel
  table = []
  for _, gray in pictures:
    encoded = api.encode(gray, encoder)
    table.append([api.psnr(gray, picture) for picture in encoded.reconstructions])
  config = encoder.config
  return {'pictures': [os.path.basename(name) for name, _ in pictures],
          'psnr_db': [round(float(v), 3) for v in np.mean(table, axis=0)],
          'bits_per_pixel': [config.bits_per_pixel(i + 1) for i in range(config.iterations)]}


def resolve_config(encoder_dir, requested, steps=None):
  """The config to train with: a new directory takes `requested`; an existing one its own
  (training resumes), refusing requested changes other than `steps`."""
  path = config_lib.encoder_json_path(encoder_dir)
  if not os.path.exists(path):
    config = requested
  else:
    config = config_lib.read_encoder_json(encoder_dir)['config']
    differing = sorted(key for key, value in requested.to_dict().items()
                       if key != 'steps' and config.to_dict()[key] != value)
    if differing:
      raise UserError(describe(encoder_dir, f'holds an encoder trained with other settings '
                               f'({", ".join(differing)}); give a new directory or the same '
                               'settings to resume'))
  if steps is not None:
    config = config_lib.config_from_dict(dict(config.to_dict(), steps=steps))
  return config


def train(encoder_dir, config, pictures=None, eval_pictures=None, save_every=200,
          progress=True):
  """Trains (or resumes training) the encoder in `encoder_dir` up to `config.steps` steps,
  then writes encoder.json with its evaluation. -> the encoder.json document."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  from entropy_coder.image_encoder import api  # pylint: disable=import-outside-toplevel
  from entropy_coder.image_encoder import model  # pylint: disable=import-outside-toplevel

  pictures = pictures if pictures is not None else default_training_pictures()
  eval_pictures = eval_pictures if eval_pictures is not None else default_eval_pictures()
  if not pictures:
    raise UserError('no training pictures')
  keras.utils.set_random_seed(config.seed)
  coder = model.ResidualCoder(config)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  step = tf.Variable(0, dtype=tf.int64, name='step')
  checkpoint = model.checkpoint(coder, optimizer, step)
  manager = tf.train.CheckpointManager(checkpoint, config_lib.checkpoint_dir(encoder_dir),
                                       max_to_keep=2)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint)
  variables = coder.trainable_variables

  @tf.function
  def train_step(pixels, seed):
    with tf.GradientTape() as tape:
      loss, errors = coder.training_loss(pixels, seed)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss, errors

  config_lib.write_encoder_json(encoder_dir, config, int(step.numpy()))
  start, first = time.monotonic(), int(step.numpy())
  if progress and first:
    print(f'resuming {encoder_dir} at step {first}/{config.steps}', file=sys.stderr, flush=True)
  while int(step.numpy()) < config.steps:
    current = int(step.numpy())
    batch = crop_batch(pictures, config, current)
    loss, errors = train_step(tf.constant(batch), tf.constant([config.seed, current], tf.int32))
    step.assign_add(1)
    done = current + 1
    if done % save_every == 0:
      manager.save(checkpoint_number=done)
      config_lib.write_encoder_json(encoder_dir, config, done)
    if progress and (done % _PROGRESS_EVERY == 0 or done == config.steps):
      rate = (done - first) / max(time.monotonic() - start, 1e-9)
      errors = errors.numpy()
      print(f'step {done}/{config.steps}  loss {float(loss):.4f}  mean |residual| after '
            f'iteration 1 {errors[0]:.4f}, {config.iterations} {errors[-1]:.4f}  '
            f'{rate:.2f} steps/s  eta {(config.steps - done) / max(rate, 1e-9):.0f}s',
            file=sys.stderr, flush=True)
  if manager.latest_checkpoint is None or int(step.numpy()) != _checkpoint_step(manager):
    manager.save(checkpoint_number=int(step.numpy()))
  config_lib.write_encoder_json(encoder_dir, config, int(step.numpy()))
  encoder = api.load_encoder(encoder_dir)
  evaluation = evaluate(encoder, eval_pictures)
  return config_lib.write_encoder_json(encoder_dir, config, int(step.numpy()), evaluation)


def _checkpoint_step(manager):
  return int(manager.latest_checkpoint.rsplit('-', 1)[1])


def format_evaluation(evaluation):
  """The PSNR table as text lines."""
  lines = [f'PSNR on {", ".join(evaluation["pictures"])} (held out):',
           'iteration  bits/pixel  PSNR (dB)']
  for i, (bpp, value) in enumerate(zip(evaluation['bits_per_pixel'], evaluation['psnr_db']), 1):
    lines.append(f'{i:9d}  {bpp:10.4f}  {value:9.2f}')
  return lines
