"""The progressive probability model of arXiv 1703.10114 in Keras (tf_keras), faithful to the
original TF1 code (docs/ORIGINAL.md §5, tests/data/reference/README.md) but free of its limits.

Data flow for a code of L layers, x_k = layer k's bits as +-1, [B, H, W, cd] each:

    x_0 .. x_{L-1} --state_k--> layer_rnn (ConvLSTM across layers) --> s_1 .. s_{L-1}  (s_0 = 0)
                                                                          |
    x_k --masked 7x7 (strict)--tanh--+                                    |
                                     +-- concat --> row ConvLSTM down the rows (1x3 input conv,
    s_k --3x3-------------------tanh-+     taps x-1, x; 1x3 hidden conv on the row above)
                                                    |
                                   1x1 tanh (h->h), 1x1 tanh (h->cd) --> clip +-0.999 --> P(bit=1)

Unlike the original:
* any H x W at call time: the row recurrence is a `tf.scan` over rows, not H unrolled copies;
  codes whose H x W x D are static when traced (training batches) take the same function
  unrolled in plain ops (trainer/static_forward.py), about 2x the samples per CPU-second;
* no state in Python attributes: a call is a pure function of its input, so it traces any
  number of times (training, each serving signature, MirroredStrategy replicas);
* every weight is created by name (the reference's names, e.g.
  `layer0/brnn/adaptation0_masked7x7/kernel`), so checkpoints and exports never depend on
  creation order;
* masks multiply the kernels inside the call, so masked taps neither affect outputs nor
  receive gradient (their Adam moments stay 0 and they keep their initial value);
* all L layers' predictors run together: their convolutions use block-diagonal kernels and
  their row LSTMs share one scan over rows, so a training step is H sequential steps, not L*H.

`channel_causal` (our extension, default off): the last 1x1 stage becomes a per-channel
autoregressive head, so bit c of a pixel also sees bits 0..c-1 of the same pixel and layer.
"""
import numpy as np
import tensorflow as tf
import tf_keras as keras

from entropy_coder.trainer import spec
from entropy_coder.trainer import static_forward
from entropy_coder.trainer.config import ModelConfig
from entropy_coder.trainer.spec import parameter_count  # noqa: F401 (re-exported)


def _initializer(init, seed):
  """The Keras initializer of a spec.Init."""
  if init.kind == 'truncated_normal':
    return keras.initializers.TruncatedNormal(stddev=init.stddev, seed=seed)
  if init.kind == 'lstm_bias':
    return lambda shape, dtype=None: tf.constant(spec.initial_lstm_bias(shape[0]), dtype=dtype)
  if init.kind == 'zeros':
    return keras.initializers.Zeros()
  raise ValueError(f'unknown initializer {init.kind!r}')


def _lstm_update(z, c_prev):
  """spec.lstm_cell on the last axis."""
  return spec.lstm_cell(z, c_prev, tf.sigmoid, tf.tanh, lambda v, n: tf.split(v, n, axis=-1))


def _grouped_conv(inputs, kernels, mask=None):
  """Applies L convolutions with different kernels to L channel groups in one conv op.

  inputs [B, H, W, L*cin]; kernels [L, kh, kw, cin, cout] (already masked) -> [B, H, W, L*cout],
  'SAME' zero padding. The kernel is block-diagonal over the groups (off-diagonal blocks are
  zeros, so groups stay exactly apart): TF's grouped convolution has no CPU gradient and was
  8x slower here. With a spatial `mask`, the kernel is cropped to the mask's bounding box and
  the padding adjusted, so hidden rows and columns cost nothing (a strict 7x7 raster mask
  leaves a 4x7 kernel).
  """
  shape = tf.shape(kernels)
  layers, kh, kw, cin, cout = (shape[i] for i in range(5))
  rows, cols, spatial = spec.mask_crop(np.ones(kernels.shape[1:3]) if mask is None else mask)
  if mask is not None:
    kernels = kernels[:, rows, cols]
    kh, kw = rows.stop - rows.start, cols.stop - cols.start
  padding = [[0, 0]] + spatial + [[0, 0]]
  block = tf.einsum('lhwio,lm->hwlimo', kernels, tf.eye(layers, dtype=kernels.dtype))
  block = tf.reshape(block, [kh, kw, layers * cin, layers * cout])
  return tf.nn.conv2d(inputs, block, strides=1, padding=padding)


class ProgressiveModel(keras.Model):
  """P(bit = 1) for every bit of a code, each from the bits before it. Input: +-1 codes.

  `call(codes_pm1)` takes float [B, H, W, D] in {-1, +1} and returns float32
  [B, H, W, D_coded] probabilities, D_coded = the channels the config models (see
  `ModelConfig.coded_depth`; callers check codes with it first for a readable error).
  """

  def __init__(self, config: ModelConfig, seed=0, **kwargs):
    super().__init__(name='progressive', **kwargs)
    self.config = config
    self._specs = spec.weight_specs(config)
    self._named = {}
    for index, (name, weight) in enumerate(sorted(self._specs.items())):
      self._named[name] = self.add_weight(
          name=name, shape=weight.shape, dtype=tf.float32, trainable=True,
          initializer=_initializer(weight.init, None if seed is None else seed * 1000 + index))
    # Codes of static H x W x D (training batches, eager calls) take trainer/static_forward.py,
    # the same function in plain ops; others, or all with False, the tf.scan path below.
    self.unrolled = True
    self._masks = {name: tf.constant(mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
                                     if mask.ndim == 2 else mask)
                   for name, (shape, _, mask) in self._specs.items() if mask is not None}

  # ---- weights by name ------------------------------------------------------------------------

  def weight(self, name):
    """A weight by its reference name, with its mask applied."""
    value = self._named[name]
    if name in self._masks:
      return value * self._masks[name]
    return value

  def named_variables_by_name(self):
    """{name: tf.Variable} (unmasked variables), for tracking outside Keras."""
    return dict(self._named)

  def get_config(self):
    return {'config': self.config.to_dict()}

  def named_weights(self):
    """{name: float32 ndarray}, masked taps zeroed: what `weights.npz` holds."""
    return {name: np.asarray(self.weight(name).numpy(), np.float32) for name in sorted(self._named)}

  def set_named_weights(self, weights, source='<weights>'):
    """Assigns weights by name; names and shapes must match the config exactly."""
    expected, given = set(self._named), set(weights)
    if expected != given:
      missing, extra = sorted(expected - given), sorted(given - expected)
      raise ValueError(f'{source}: weights do not fit the model config '
                       f'(missing {missing[:3]}{"..." if len(missing) > 3 else ""}, '
                       f'unexpected {extra[:3]}{"..." if len(extra) > 3 else ""})')
    for name, value in weights.items():
      variable = self._named[name]
      if tuple(variable.shape) != tuple(np.shape(value)):
        raise ValueError(f'{source}: {name} has shape {np.shape(value)}, the model expects '
                         f'{tuple(variable.shape)}')
      variable.assign(np.asarray(value, np.float32))

  def _stacked(self, suffix, layers):
    """[L, ...] stack of the layer-k weights `suffix` (spec.layer_weight), for the first L layers."""
    stacked = tf.stack([self.weight(spec.layer_weight(k, suffix))
                        for k in range(self.config.layer_count)])
    return stacked[:layers]

  # ---- forward --------------------------------------------------------------------------------

  def call(self, codes_pm1, training=False):
    del training  # no dropout or batch statistics
    config = self.config
    cd, h = config.layer_depth, config.hidden_depth
    x = tf.convert_to_tensor(codes_pm1, tf.float32)
    if self.unrolled and x.shape.rank == 4 and None not in x.shape[1:]:
      return static_forward.forward(self, x)
    shape = tf.shape(x)
    batch, height, width, depth = shape[0], shape[1], shape[2], shape[3]
    layers = config.coded_layers_in_graph(depth)
    x = x[..., :layers * cd]
    x_layers = tf.reshape(x, [batch, height, width, layers, cd])

    states = self._layer_states(x_layers, layers)  # [B, H, W, L, cd]: s_0 .. s_{L-1}
    stack = lambda name: self._stacked(name, layers)  # pylint: disable=unnecessary-lambda-assignment
    a0 = tf.tanh(tf.reshape(
        _grouped_conv(x, stack('brnn/adaptation0_masked7x7/kernel'), spec.ADAPTATION0_MASK),
        [batch, height, width, layers, h]) + stack('brnn/adaptation0_masked7x7/bias'))
    a1 = tf.tanh(tf.reshape(
        _grouped_conv(tf.reshape(states, [batch, height, width, layers * cd]),
                             stack('brnn/adaptation1_conv3x3/kernel')),
        [batch, height, width, layers, h]) + stack('brnn/adaptation1_conv3x3/bias'))
    a = spec.row_input(lambda parts: tf.concat(parts, axis=-1), adaptation0=a0, adaptation1=a1)
    z_input = tf.reshape(
        _grouped_conv(tf.reshape(a, [batch, height, width, layers * spec.row_input_depth(h)]),
                      stack('brnn/row_lstm/input_conv/kernel'), spec.ROW_INPUT_MASK),
        [batch, height, width, layers, len(spec.GATES) * h]) + stack('brnn/row_lstm/bias')
    rows_h = self._row_lstm(z_input, stack('brnn/row_lstm/hidden_conv/kernel'))
    return self.head(rows_h, x_layers, stack)

  def head(self, rows_h, x_layers, stack):
    """The row LSTM's h [B, H, W, L, h] -> P(bit = 1) [B, H, W, L*cd]: out1x1_a, then out1x1_b
    or, channel_causal, the per-channel head on the pixel's own bits x_layers [B, H, W, L, cd];
    `stack(suffix)` is `_stacked` for the L layers."""
    shape = tf.shape(rows_h)
    batch, height, width, layers = shape[0], shape[1], shape[2], shape[3]
    cd = self.config.layer_depth
    pre_a = (tf.einsum('bhwli,lio->bhwlo', rows_h, stack('brnn/out1x1_a/kernel')[:, 0, 0])
             + stack('brnn/out1x1_a/bias'))
    kernel_b = stack('brnn/out1x1_b/kernel')[:, 0, 0]  # [L, h, cd]
    bias_b = stack('brnn/out1x1_b/bias')
    if self.config.channel_causal:
      # Channel c's hidden units see the pixel's own bits j < c (mask keeps [j, c] for j < c).
      pre_a = pre_a[..., None, :] + tf.einsum(
          'bhwlj,ljco->bhwlco', x_layers, stack('brnn/channel_ar/kernel'))
      pred = tf.tanh(tf.einsum('bhwlco,loc->bhwlc', tf.tanh(pre_a), kernel_b) + bias_b)
    else:
      pred = tf.tanh(tf.einsum('bhwli,lic->bhwlc', tf.tanh(pre_a), kernel_b) + bias_b)
    return tf.reshape(spec.probability(pred, tf.clip_by_value), [batch, height, width, layers * cd])

  def _layer_states(self, x_layers, layers):
    """s_0 = 0; s_{k+1} = layer_rnn(state_block_k(x_k)), the ConvLSTM state carried k -> k+1."""
    h = self.config.hidden_depth
    per_layer = tf.transpose(x_layers, [3, 0, 1, 2, 4])  # [L, B, H, W, cd]
    stack = lambda name: self._stacked(name, layers)  # pylint: disable=unnecessary-lambda-assignment
    elems = (per_layer,
             stack('state_block/conv3x3_a/kernel'), stack('state_block/conv3x3_a/bias'),
             stack('state_block/conv3x3_b/kernel'), stack('state_block/conv3x3_b/bias'))
    rnn_in = self.weight('layer_rnn/lstm/input_conv/kernel')[0, 0]
    rnn_hidden = self.weight('layer_rnn/lstm/hidden_conv/kernel')[0, 0]
    rnn_bias = self.weight('layer_rnn/lstm/bias')
    out_a, bias_a = self.weight('layer_rnn/out1x1_a/kernel')[0, 0], self.weight('layer_rnn/out1x1_a/bias')
    out_b, bias_b = self.weight('layer_rnn/out1x1_b/kernel')[0, 0], self.weight('layer_rnn/out1x1_b/bias')

    def step(carry, elem):
      state, lstm_h, lstm_c = carry
      x_k, kernel_a, b_a, kernel_b, b_b = elem
      t = tf.tanh(tf.nn.conv2d(x_k, kernel_a, 1, 'SAME') + b_a)
      t = tf.tanh(tf.nn.conv2d(t, kernel_b, 1, 'SAME') + b_b)
      z = (tf.einsum('bhwi,io->bhwo', t, rnn_in) + rnn_bias
           + tf.einsum('bhwi,io->bhwo', lstm_h, rnn_hidden))
      lstm_h, lstm_c = _lstm_update(z, lstm_c)
      new_state = tf.tanh(tf.einsum('bhwi,io->bhwo',
                                    tf.tanh(tf.einsum('bhwi,io->bhwo', lstm_h, out_a) + bias_a),
                                    out_b) + bias_b)
      # Emit the state layer k used (carry[0]); carry the next one.
      return new_state, lstm_h, lstm_c

    first = per_layer[0]
    zeros_cd = tf.zeros_like(first)
    zeros_h = tf.zeros(tf.concat([tf.shape(first)[:3], [h]], 0))
    # scan emits s_1 .. s_L; the states used are s_0 .. s_{L-1}.
    next_states, _, _ = tf.scan(step, elems, initializer=(zeros_cd, zeros_h, zeros_h))
    states = tf.concat([zeros_cd[None], next_states[:-1]], axis=0)
    return tf.transpose(states, [1, 2, 3, 0, 4])  # [B, H, W, L, cd]

  def _row_lstm(self, z_input, hidden_kernels):
    """The row ConvLSTM of every layer at once: one scan step per row, state [B, W, L, h].

    z_input [B, H, W, L, 4h] (input conv + bias, precomputed for all rows since it does not
    depend on the recurrence); hidden_kernels [L, 1, 3, h, 4h] act on the previous row's h at
    x-1, x, x+1 (zero beyond the edges: SAME padding).
    """
    h = self.config.hidden_depth
    shape = tf.shape(z_input)
    layers = shape[3]
    hidden = tf.reshape(hidden_kernels, [layers, 3 * h, len(spec.GATES) * h])  # taps x-1, x, x+1

    def step(carry, z_row):
      row_h, row_c = carry
      padded = tf.pad(row_h, [[0, 0], [1, 1], [0, 0], [0, 0]])
      taps = tf.concat([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], axis=-1)
      z = z_row + tf.einsum('bwli,lio->bwlo', taps, hidden)
      return _lstm_update(z, row_c)

    rows = tf.transpose(z_input, [1, 0, 2, 3, 4])  # [H, B, W, L, 4h]
    zeros = tf.zeros(tf.concat([shape[:1], shape[2:4], [h]], 0))
    rows_h, _ = tf.scan(step, rows, initializer=(zeros, zeros))
    return tf.transpose(rows_h, [1, 0, 2, 3, 4])

