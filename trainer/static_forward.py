"""The progressive model's forward pass for codes whose H x W x D are known when it is traced:
the training path (fixed-size batches), in plain TensorFlow ops, with no while loop.

Same function as `ProgressiveModel`'s tf.scan path (trainer/model.py), which stays for codes of
any H x W (the serving signatures); tests/test_model_static_forward.py holds the two equal.
What makes it faster on a CPU (docs/BENCHMARKS.md, "Training throughput"), where a training step
is thousands of tiny ops whose fixed cost outweighs their arithmetic:

* the row recurrence is unrolled over the H rows: no while loop, whose gradient stacks every
  row's tensors in TensorLists;
* the row LSTM's pre-activations are laid out gate-major (gate, layer, j) for all L layers, so
  a row step is one matmul on the previous row's taps, one add and the gates: no reshape,
  transpose or per-layer einsum inside the recurrence;
* the state blocks of all layers (which do not depend on the recurrence) run at once as
  block-diagonal convolutions; only the layer LSTM's few 1x1 steps are sequential;
* 1x1 stages are single MatMuls with block-diagonal kernels (oneDNN's einsum costs ~1 ms per
  call at these sizes);
* weights are stacked only for the layers the code has; slices whose gradient would be a
  StridedSliceGrad are reshapes, splits or tf.slice.
"""
import numpy as np
import tensorflow as tf

from entropy_coder.trainer import spec

_GATES = len(spec.GATES)


def _dense(x, kernel):
  """x [..., cin] @ kernel [cin, cout] as one MatMul (x's leading dims static)."""
  lead = x.shape[:-1].as_list()
  flat = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)
  return tf.reshape(flat, [-1 if d is None else d for d in lead] + [kernel.shape[-1]])


def _block_diagonal(kernels):
  """[kernel [..., cin, cout]] * L -> [..., L*cin, L*cout], block l = kernels[l]; zeros
  elsewhere, so the L groups of channels stay exactly apart."""
  layers, cout = len(kernels), kernels[0].shape[-1]
  rank = kernels[0].shape.rank
  padded = [tf.pad(kernel, [[0, 0]] * (rank - 1) + [[l * cout, (layers - 1 - l) * cout]])
            for l, kernel in enumerate(kernels)]
  return tf.concat(padded, axis=rank - 2)


def _gate_major(values, layers):
  """[..., L*4h] in the layer-major (l, gate, j) order -> gate-major (gate, l, j): splitting the
  last axis in four then gives one gate of all L layers in the state's layout [..., L*h]."""
  lead = values.shape[:-1].as_list()
  split = tf.reshape(values, lead + [layers, _GATES, values.shape[-1] // (layers * _GATES)])
  rank = len(lead)
  perm = list(range(rank)) + [rank + 1, rank, rank + 2]
  return tf.reshape(tf.transpose(split, perm), lead + [values.shape[-1]])


def _conv(x, kernels, mask=None, gate_major=False):
  """L convolutions on L channel groups of x [B, H, W, L*cin], 'SAME' zero padding, as one
  conv with a block-diagonal kernel cropped to the mask's live rows and columns. (im2col, the
  live taps' shifted copies times one kernel matrix, measured slower: memory-bound copies.)"""
  rows, cols, spatial = spec.mask_crop(np.ones(kernels[0].shape[:2]) if mask is None else mask)
  block = _block_diagonal([kernel[rows, cols] for kernel in kernels])
  if gate_major:
    block = _gate_major(block, len(kernels))
  return tf.nn.conv2d(x, block, strides=1, padding=[[0, 0]] + spatial + [[0, 0]])


def _lstm(z, c_prev):
  """spec.lstm_cell on gate-major pre-activations [..., 4*L*h]."""
  return spec.lstm_cell(z, c_prev, tf.sigmoid, tf.tanh, lambda v, n: tf.split(v, n, axis=-1))


def forward(model, x):
  """ProgressiveModel.call for x [B, H, W, D] (+-1) with static H, W, D -> P(bit = 1)
  [B, H, W, L*cd]."""
  config = model.config
  cd, h = config.layer_depth, config.hidden_depth
  _, height, width, depth = x.shape
  layers = config.coded_layers_in_graph(depth)  # an int: depth is static
  if depth > layers * cd:
    x = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, layers * cd])
  weights = lambda suffix: [model.weight(spec.layer_weight(k, suffix))  # pylint: disable=unnecessary-lambda-assignment
                            for k in range(layers)]
  biases = lambda suffix: tf.concat(weights(suffix), 0)  # pylint: disable=unnecessary-lambda-assignment

  states = _layer_states(model, x, layers)  # [B, H, W, L*cd]: s_0 .. s_{L-1}
  a0 = tf.tanh(_conv(x, weights('brnn/adaptation0_masked7x7/kernel'), spec.ADAPTATION0_MASK)
               + biases('brnn/adaptation0_masked7x7/bias'))
  a1 = tf.tanh(_conv(states, weights('brnn/adaptation1_conv3x3/kernel'))
               + biases('brnn/adaptation1_conv3x3/bias'))
  # a = per layer spec.row_input of the two stages: [B, H, W, L * row_input_depth(h)]
  grouped = [-1, height, width, layers, h]
  a = tf.reshape(spec.row_input(lambda parts: tf.concat(parts, -1),
                                adaptation0=tf.reshape(a0, grouped),
                                adaptation1=tf.reshape(a1, grouped)),
                 [-1, height, width, layers * spec.row_input_depth(h)])
  z_input = (_conv(a, weights('brnn/row_lstm/input_conv/kernel'), spec.ROW_INPUT_MASK,
                   gate_major=True)
             + _gate_major(biases('brnn/row_lstm/bias'), layers))
  rows_h = _row_lstm(z_input, weights('brnn/row_lstm/hidden_conv/kernel'), layers, width)
  if config.channel_causal:
    stacked = lambda suffix: tf.stack(weights(suffix))  # pylint: disable=unnecessary-lambda-assignment
    return model.head(tf.reshape(rows_h, grouped), tf.reshape(x, grouped[:4] + [cd]), stacked)
  kernel_a = _block_diagonal([kernel[0, 0] for kernel in weights('brnn/out1x1_a/kernel')])
  kernel_b = _block_diagonal([kernel[0, 0] for kernel in weights('brnn/out1x1_b/kernel')])
  pre_a = _dense(rows_h, kernel_a) + biases('brnn/out1x1_a/bias')
  pred = tf.tanh(_dense(tf.tanh(pre_a), kernel_b) + biases('brnn/out1x1_b/bias'))
  return spec.probability(pred, tf.clip_by_value)


def _layer_states(model, x, layers):
  """s_0 = 0; s_{k+1} = layer_rnn(state_block_k(x_k)): the L-1 state blocks used at once, then
  L-1 LSTM steps of 1x1 convs (MatMuls). x [B, H, W, L*cd] -> [B, H, W, L*cd]."""
  cd = model.config.layer_depth
  zeros = tf.zeros_like(tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, cd]))
  if layers == 1:
    return zeros
  used = layers - 1  # s_L is never used
  weights = lambda suffix: [model.weight(spec.layer_weight(k, suffix)) for k in range(used)]  # pylint: disable=unnecessary-lambda-assignment
  biases = lambda suffix: tf.concat(weights(suffix), 0)  # pylint: disable=unnecessary-lambda-assignment
  t = tf.tanh(_conv(tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, used * cd]),
                    weights('state_block/conv3x3_a/kernel'))
              + biases('state_block/conv3x3_a/bias'))
  t = tf.tanh(_conv(t, weights('state_block/conv3x3_b/kernel'))
              + biases('state_block/conv3x3_b/bias'))
  shared = lambda name: model.weight(f'layer_rnn/{name}')  # pylint: disable=unnecessary-lambda-assignment
  z_in = tf.unstack(tf.reshape(t, t.shape[:3].as_list() + [used, cd]), axis=3)
  states, lstm_h, lstm_c = [zeros], None, 0.0  # layer -1: h = c = 0
  for z_k in z_in:
    z = _dense(z_k, shared('lstm/input_conv/kernel')[0, 0]) + shared('lstm/bias')
    if lstm_h is not None:
      z = z + _dense(lstm_h, shared('lstm/hidden_conv/kernel')[0, 0])
    lstm_h, lstm_c = _lstm(z, lstm_c)
    hidden = tf.tanh(_dense(lstm_h, shared('out1x1_a/kernel')[0, 0]) + shared('out1x1_a/bias'))
    states.append(tf.tanh(_dense(hidden, shared('out1x1_b/kernel')[0, 0])
                          + shared('out1x1_b/bias')))
  return tf.concat(states, axis=-1)


def _row_lstm(z_input, hidden_kernels, layers, width):
  """The row ConvLSTM of all layers, one row after another: state h, c [B, W, L*h]; z_input
  [B, H, W, 4*L*h] gate-major; hidden_kernels L x [1, 3, h, 4h] on the row above at x-1, x,
  x+1 (zero beyond the edges). -> [B, H, W, L*h]."""
  hidden = _gate_major(_block_diagonal([kernel[0] for kernel in hidden_kernels]), layers)
  hidden = tf.reshape(hidden, [-1, hidden.shape[-1]])  # [(x-1 | x | x+1, L*h), 4Lh]
  lh = hidden.shape[0] // 3
  rows, row_h, row_c = [], None, 0.0  # row -1: h = c = 0
  row_shape = [-1, width, z_input.shape[-1]]
  # split and concat along H (each the gradient of the other)
  for z in tf.split(z_input, z_input.shape[1], axis=1):  # [B, 1, W, 4Lh] each
    z = tf.reshape(z, row_shape)
    if row_h is not None:
      padded = tf.pad(row_h, [[0, 0], [1, 1], [0, 0]])
      taps = tf.concat([tf.slice(padded, [0, dx, 0], [-1, width, lh]) for dx in range(3)], -1)
      z = z + _dense(taps, hidden)
    row_h, row_c = _lstm(z, row_c)
    rows.append(tf.reshape(row_h, [-1, 1, width, lh]))
  return tf.concat(rows, axis=1)
