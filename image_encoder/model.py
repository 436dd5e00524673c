"""The networks of the residual binary autoencoder, and its coding arithmetic.

One encoder and one decoder, shared by every iteration (as the paper's networks are), plus one
learned gain per iteration: iteration i sees the residual r_i (picture minus what the earlier
iterations reconstructed) times exp(g_i), so the ever smaller residuals reach the shared
encoder at about one scale; its decoder's output is divided by exp(g_i) again.

    r_0 = x
    b_i = sign(E(r_i * exp(g_i)))                      bits_per_iteration channels, H/16 x W/16
    r_{i+1} = r_i - D(b_i) / exp(g_i)
    reconstruction after k iterations = sum_{i<k} D(b_i) / exp(g_i)

Pixels are gray values scaled to [-0.5, 0.5]. The binariser is tanh followed by sign: in
training a stochastic sign (+1 with probability (1 + t) / 2, from a seeded stateless draw) with
the straight-through gradient of t; when coding the plain sign (t >= 0 -> +1, bit 1), so a
picture gives the same bits every time. Decoding needs only the bits: the decoder's output from
the stored bits is exactly the reconstruction the encoder computed.

No recurrent state across iterations (docs/IMAGE_ENCODER.md says why: cost on this machine).
"""
import numpy as np
import tensorflow as tf
import tf_keras as keras


def _encoder(config):
  inputs = keras.Input((None, None, 1))
  x = inputs
  for i, width in enumerate(config.channels):
    x = keras.layers.Conv2D(width, 3, strides=2, padding='same', activation='relu',
                            name=f'enc_conv{i}')(x)
  x = keras.layers.Conv2D(config.bits_per_iteration, 1, activation='tanh', name='enc_bits')(x)
  return keras.Model(inputs, x, name='encoder')


def _decoder(config):
  inputs = keras.Input((None, None, config.bits_per_iteration))
  widths = list(reversed(config.channels))
  x = keras.layers.Conv2D(widths[0], 1, activation='relu', name='dec_in')(inputs)
  # Four 2x upsamplings: a 3x3 convolution to 4x the next width, then depth_to_space (the
  # paper's sub-pixel decoder). Widths halve towards the pixels, where positions are many.
  next_widths = widths[1:] + [max(widths[-1] // 2, 4)]
  for i, width in enumerate(next_widths):
    x = keras.layers.Conv2D(4 * width, 3, padding='same', name=f'dec_conv{i}')(x)
    x = keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name=f'dec_up{i}')(x)
    x = keras.layers.ReLU(name=f'dec_relu{i}')(x)
  x = keras.layers.Conv2D(1, 3, padding='same', name='dec_pixels')(x)
  return keras.Model(inputs, x, name='decoder')


class ResidualCoder(tf.Module):
  """The encoder and decoder networks and the per-iteration gains, for one EncoderConfig."""

  def __init__(self, config):
    super().__init__(name='residual_coder')
    self.config = config
    self.encoder = _encoder(config)
    self.decoder = _decoder(config)
    # log-gains, starting at sqrt(2) per iteration (about 3 dB of PSNR each).
    self.log_gains = tf.Variable(np.arange(config.iterations, dtype=np.float32) * 0.35,
                                 name='log_gains')
    self._encode_fn = tf.function(self._encode_step, reduce_retracing=True)
    self._decode_fn = tf.function(self._decode_step, reduce_retracing=True)

  @property
  def trainable_variables(self):
    return (list(self.encoder.trainable_variables) + list(self.decoder.trainable_variables)
            + [self.log_gains])

  def training_loss(self, pixels, seed):
    """pixels float [B, H, W, 1] in [-0.5, 0.5] -> (loss, mean |residual| per iteration).

    The loss is the sum over iterations of the mean absolute residual left after it (the
    paper's L1 on every iteration's residual), so each iteration learns to code what the
    earlier ones left. `seed`: int32 [2], the stochastic binariser's stateless draws.
    """
    residual = pixels
    errors = []
    for i in range(self.config.iterations):
      gain = tf.exp(self.log_gains[i])
      t = self.encoder(residual * gain, training=True)
      uniform = tf.random.stateless_uniform(tf.shape(t), seed=seed + [0, i])
      stochastic = tf.where(uniform < (1.0 + t) / 2.0, 1.0, -1.0)
      bits = t + tf.stop_gradient(stochastic - t)  # straight-through
      residual = residual - self.decoder(bits, training=True) / gain
      errors.append(tf.reduce_mean(tf.abs(residual)))
    errors = tf.stack(errors)
    return tf.reduce_sum(errors), errors

  def _encode_step(self, residual, iteration):
    """float [1, H, W, 1] residual -> float signs [1, H/16, W/16, bits] of the iteration."""
    t = self.encoder(residual * tf.exp(self.log_gains[iteration]), training=False)
    return tf.where(t >= 0.0, 1.0, -1.0)

  def _decode_step(self, sign, iteration):
    """float signs [1, h, w, bits] -> the iteration's float [1, 16h, 16w, 1] contribution."""
    return self.decoder(sign, training=False) / tf.exp(self.log_gains[iteration])

  def encode(self, pixels):
    """float32 [H, W] in [-0.5, 0.5], H and W multiples of 16 -> (bits uint8
    [iterations, 1, H/16, W/16, bits_per_iteration], float32 [iterations, H, W] reconstructions
    after each iteration). One picture at a time, so the bits never depend on a batch.

    The reconstructions are summed by `_accumulate`, as `decode` sums them: decoding the bits
    gives these very values."""
    residual = np.asarray(pixels, np.float32)[None, :, :, None]
    signs, steps = [], []
    for i in range(self.config.iterations):
      sign = self._encode_fn(tf.constant(residual), tf.constant(i))
      step = self._decode_fn(sign, tf.constant(i)).numpy()
      residual = residual - step
      signs.append(sign.numpy())
      steps.append(step)
    return (np.stack(signs) > 0).astype(np.uint8), _accumulate(steps)

  def decode(self, bits):
    """uint8 [k, 1, h, w, bits_per_iteration] {0,1} (k <= iterations) -> float32 [k, 16h, 16w]
    reconstructions after each of the k iterations."""
    signs = np.asarray(bits, np.float32) * 2.0 - 1.0
    return _accumulate([self._decode_fn(tf.constant(sign), tf.constant(i)).numpy()
                        for i, sign in enumerate(signs)])


def _accumulate(steps):
  """Per-iteration float32 [1, H, W, 1] contributions -> [k, H, W] running sums (float32)."""
  return np.cumsum(np.stack(steps)[:, 0, :, :, 0], axis=0, dtype=np.float32)


def to_unit(gray_pixels):
  """uint8 gray [H, W] -> float32 in [-0.5, 0.5], the networks' pixel scale."""
  return np.asarray(gray_pixels, np.float32) / 255.0 - 0.5


def to_uint8(unit_pixels):
  """The networks' pixel scale -> uint8 gray, clipped and rounded."""
  return np.clip(np.round((np.asarray(unit_pixels) + 0.5) * 255.0), 0, 255).astype(np.uint8)


def checkpoint(coder, optimizer=None, step=None):
  """The tf.train.Checkpoint of what training saves (networks, gains, optimiser, step)."""
  parts = {'encoder': coder.encoder, 'decoder': coder.decoder, 'log_gains': coder.log_gains}
  if optimizer is not None:
    parts['optimizer'] = optimizer
  if step is not None:
    parts['step'] = step
  return tf.train.Checkpoint(**parts)

