"""The progressive model's definition (docs/ORIGINAL.md §5), in numpy only.

This module is the model's definition. The Keras model (trainer/model.py), the numpy reference
(codec/full_forward.py) and the codec engine (codec/engine_weights.py, which lays the weights out
for codec/engine.py) import from it the weights' names, shapes, initialisers and masks, the live
taps, the LSTM gate order and cell, the order of the row LSTM's input, the prediction clip, the
hidden width and the channel grouping, and restate none of them: what the agreement tests still
compare is arithmetic.
Change the model here. As tensorflow-compression builds an entropy model's coding tables once
and ships them with the model, so that no encoder and decoder can disagree on them, a file here
decodes only under the definition it was coded with, and the file's model fingerprint covers
the weights and the config, not this module: a change here that alters the codec's arithmetic
(a shape, a mask or tap, the gate order, the row input's order, the clip, the channel
grouping) must bump the coder id of codec/bitstream.py (CODER_ID; VERSION is the container
layout's). numba's on-disk cache of codec/engine.py has these constants compiled in and does
not see a change here: clear codec/__pycache__ after one.

Importable without TensorFlow (numpy and trainer/masks.py only): the codec imports it.
"""
import typing

import numpy as np

from entropy_coder.trainer import masks

# ---- widths and channel grouping ---------------------------------------------------------------


def hidden_depth(layer_depth, hidden=None):
  """h, the width of every hidden stage: a model_config's `hidden_depth` when it sets one
  (`hidden`), else the original's 2 * cd (so a config without the key is the original's shape)."""
  return 2 * layer_depth if hidden is None else hidden


def layer_channels(layer, layer_depth):
  """The channels of layer `layer` in a [H, W, D] code: channel = layer * layer_depth + bit
  (docs/ORIGINAL.md §2), so layer k is the slice k*cd .. (k+1)*cd - 1."""
  return slice(layer * layer_depth, (layer + 1) * layer_depth)


# ---- the row LSTM's input a ---------------------------------------------------------------------

# a, what the row LSTM's input conv reads, is the two adaptation stages side by side along the
# channels, h each, in this order (adaptation0 first, as the original): T(masked7x7(x_k)) on the
# layer's own bits, then T(conv3x3(s_k)) on its state. The input conv's 2h input channels (and
# the codec's split of that kernel) follow this order.
ROW_INPUT_PARTS = ('adaptation0', 'adaptation1')


def row_input_depth(hidden):
  """Channels of a: len(ROW_INPUT_PARTS) stages of `hidden` each."""
  return len(ROW_INPUT_PARTS) * hidden


def row_input(concat, **parts):
  """a from its parts in any array library: `concat(list)` joins them along the channels, which
  this puts in ROW_INPUT_PARTS order; `parts` are adaptation0=..., adaptation1=..."""
  if set(parts) != set(ROW_INPUT_PARTS):
    raise ValueError(f'row_input takes {ROW_INPUT_PARTS}, got {sorted(parts)}')
  return concat([parts[name] for name in ROW_INPUT_PARTS])


# ---- the prediction clip -------------------------------------------------------------------------

# pred_k in (-1, 1) is clipped to [-PRED_CLIP, PRED_CLIP] before P(1) = (pred + 1) / 2: the
# original's epsilon (docs/ORIGINAL.md §5). 1.0 - 0.001 is exactly the float64 0.999.
EPSILON = 0.001
PRED_CLIP = 1.0 - EPSILON


def probability(pred, clip):
  """P(bit = 1) from pred in any array library: (clip(pred, -PRED_CLIP, PRED_CLIP) + 1) / 2, with
  `clip(values, low, high)` the library's clip (the codec's engine rounds the same expression in
  float32 itself, codec/engine.py)."""
  return (clip(pred, -PRED_CLIP, PRED_CLIP) + 1.0) / 2.0

# ---- the LSTMs (row LSTM and layer_rnn) ----------------------------------------------------------

# The 4h pre-activation channels are the gates in this order, h channels each.
GATES = ('f', 'i', 'j', 'o')
# The LSTM bias starts at 1 on the forget gate, 0 elsewhere.
FORGET_BIAS = 1.0


def gate_slices(hidden):
  """{gate: slice of the 4*hidden pre-activation channels}, in GATES order."""
  return {gate: slice(n * hidden, (n + 1) * hidden) for n, gate in enumerate(GATES)}


def lstm_cell(z, c_prev, sigmoid, tanh, split):
  """One LSTM step in any array library: -> (h, c).

  z holds the 4h pre-activations; `split(z, 4)` cuts it into its quarters along the gate axis,
  which are the gates in GATES order. c = sigmoid(f) c_prev + sigmoid(i) tanh(j),
  h = sigmoid(o) tanh(c); no peepholes.
  """
  gate = dict(zip(GATES, split(z, len(GATES))))
  c = sigmoid(gate['f']) * c_prev + sigmoid(gate['i']) * tanh(gate['j'])
  return sigmoid(gate['o']) * tanh(c), c


def initial_lstm_bias(channels):
  """float64 [channels] (= 4h): FORGET_BIAS on the forget gate's quarter, 0 elsewhere."""
  bias = np.zeros(channels)
  bias[gate_slices(channels // len(GATES))['f']] = FORGET_BIAS
  return bias


# ---- masks and live taps -------------------------------------------------------------------------

ADAPTATION0_MASK = masks.raster_mask(7, 7, strict=True)  # on the layer's own bits: 24 of 49 taps
ROW_INPUT_MASK = masks.raster_mask(1, 3, strict=False)   # row LSTM input conv on a: x-1 and x
channel_ar_mask = masks.channel_ar_mask                 # channel_ar [j, c, :] lives for j < c


def live_taps(mask):
  """(dy, dx) offsets from the centre of the taps a [kh, kw] mask keeps, in raster order."""
  cy, cx = mask.shape[0] // 2, mask.shape[1] // 2
  return tuple((int(ky) - cy, int(kx) - cx) for ky, kx in zip(*np.nonzero(mask)))


def live_kernel(kernel, mask):
  """kernel [kh, kw, ...] -> [taps, ...]: the taps `mask` keeps, in the order of live_taps."""
  return kernel[np.asarray(mask) != 0]


def mask_crop(mask):
  """A [kh, kw] mask's bounding box of live taps and the 'SAME'-equivalent padding of the
  cropped kernel: -> (rows slice, cols slice, [[top, bottom], [left, right]]). A convolution
  with kernel[rows, cols] and this padding equals the full masked one, and hidden rows and
  columns cost nothing (a strict 7x7 raster mask leaves a 4x7 kernel)."""
  kernel_height, kernel_width = np.shape(mask)
  cy, cx = kernel_height // 2, kernel_width // 2
  kept_rows, kept_cols = np.nonzero(np.any(mask, axis=1))[0], np.nonzero(np.any(mask, axis=0))[0]
  rows = slice(int(kept_rows[0]), int(kept_rows[-1]) + 1)
  cols = slice(int(kept_cols[0]), int(kept_cols[-1]) + 1)
  return rows, cols, [[cy - rows.start, rows.stop - 1 - cy], [cx - cols.start, cols.stop - 1 - cx]]


TAPS_7X7 = live_taps(ADAPTATION0_MASK)     # (dy, dx) of adaptation0's 24 live taps
ROW_INPUT_TAPS = live_taps(ROW_INPUT_MASK)  # ((0, -1), (0, 0))

# ---- the weights ---------------------------------------------------------------------------------


class Init(typing.NamedTuple):
  """How a weight is initialised: `kind` 'truncated_normal' (normal with `stddev`, resampled
  beyond 2 stddev), 'zeros', or 'lstm_bias' (`initial_lstm_bias`)."""
  kind: str
  stddev: typing.Optional[float] = None


class WeightSpec(typing.NamedTuple):
  """One weight: its shape, initialiser and mask (None, a spatial [kh, kw] mask shared by all
  channels of a kernel [kh, kw, cin, cout], or channel_ar's [cd, cd, 1])."""
  shape: tuple
  init: Init
  mask: typing.Optional[np.ndarray] = None


def _conv(kernel_height, kernel_width, cin, cout, mask=None, bias=True):
  """{leaf: WeightSpec} of one convolution: kernel (+ bias). Kernels as the original: truncated
  normal with std 1/sqrt(kh*kw*cin), masked taps included; biases 0."""
  specs = {'kernel': WeightSpec((kernel_height, kernel_width, cin, cout),
                                Init('truncated_normal',
                                     1.0 / np.sqrt(kernel_height * kernel_width * cin)), mask)}
  if bias:
    specs['bias'] = WeightSpec((cout,), Init('zeros'))
  return specs


def _lstm_bias(gates):
  """{leaf: WeightSpec} of a ConvLSTM's one bias [4h] (its two convs have none)."""
  return {'bias': WeightSpec((gates,), Init('lstm_bias'))}


def layer_weight(layer, suffix):
  """The name of layer `layer`'s weight `suffix`, e.g. (0, 'brnn/out1x1_a/bias')."""
  return f'layer{layer}/{suffix}'


def weight_specs(config):
  """{name: WeightSpec} of every weight of a model `config` (layer_depth, layer_count,
  channel_causal, hidden_depth: a trainer.config.ModelConfig), in the reference's names and
  shapes (tests/data/reference/README.md; kernels HWIO)."""
  cd, h = config.layer_depth, config.hidden_depth
  gates = len(GATES) * h
  per_layer = {
      'brnn/adaptation0_masked7x7': _conv(7, 7, cd, h, mask=ADAPTATION0_MASK),
      'brnn/adaptation1_conv3x3': _conv(3, 3, cd, h),
      'brnn/row_lstm/input_conv': _conv(1, 3, row_input_depth(h), gates, mask=ROW_INPUT_MASK,
                                        bias=False),
      'brnn/row_lstm/hidden_conv': _conv(1, 3, h, gates, bias=False),
      'brnn/row_lstm': _lstm_bias(gates),
      'brnn/out1x1_a': _conv(1, 1, h, h),
      'brnn/out1x1_b': _conv(1, 1, h, cd),
      'state_block/conv3x3_a': _conv(3, 3, cd, h),
      'state_block/conv3x3_b': _conv(3, 3, h, cd),
  }
  if config.channel_causal:  # our extension, initially the original's head
    per_layer['brnn/channel_ar'] = {
        'kernel': WeightSpec((cd, cd, h), Init('zeros'), channel_ar_mask(cd))}
  shared = {
      'layer_rnn/lstm/input_conv': _conv(1, 1, cd, gates, bias=False),
      'layer_rnn/lstm/hidden_conv': _conv(1, 1, h, gates, bias=False),
      'layer_rnn/lstm': _lstm_bias(gates),
      'layer_rnn/out1x1_a': _conv(1, 1, h, h),
      'layer_rnn/out1x1_b': _conv(1, 1, h, cd),
  }
  blocks = [(layer_weight(k, prefix), block) for k in range(config.layer_count)
            for prefix, block in per_layer.items()] + list(shared.items())
  return {f'{prefix}/{leaf}': weight for prefix, block in blocks for leaf, weight in block.items()}


def weight_shapes(config):
  """{name: shape} of `weight_specs(config)`."""
  return {name: weight.shape for name, weight in weight_specs(config).items()}


def parameter_count(config, include_masked=True):
  """Parameters of the model; the original counts masked taps too (10,094 for the synthetic
  config; docs/ORIGINAL.md §5)."""
  total = 0
  for shape, _, mask in weight_specs(config).values():
    if mask is None or include_masked:
      total += int(np.prod(shape))
    else:
      total += int(np.prod(shape) // mask.size * mask.sum())
  return total
