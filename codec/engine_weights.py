"""The progressive model's weights, checked and laid out for the codec's arithmetic.

The weights a model must hold (names, shapes, masks, live taps) are trainer/spec.py's, the
model's one definition; `Network` says where each lands. The masks are applied here, always: the
reference file stores masked kernels unmasked, ours may store them masked, and masking twice
changes nothing. The arrays are float64 here (the numpy full forward's precision); the engine
takes exact float32 copies (`engine.float32_network`), so the encoder and the decoder start from
the very same numbers.
"""
import dataclasses

import numpy as np

from entropy_coder.errors import UserError, describe
from entropy_coder.trainer import spec
from entropy_coder.trainer.config import code_layers, model_config_from_dict

# The model's facts the codec modules use, from trainer/spec.py (not restated here): the clip of
# pred, the (dy, dx) of adaptation0's 24 live 7x7 taps (w7's order), channel_ar's mask.
PRED_CLIP = spec.PRED_CLIP
TAPS_7X7 = spec.TAPS_7X7
channel_ar_mask = spec.channel_ar_mask


@dataclasses.dataclass(frozen=True)
class Network:
  """Checked weights of one model (float64), stacked over layers (leading axis = layer k).

  Masked kernels are stored masked; `w7` keeps only the 24 live taps of the 7x7 kernel (in
  TAPS_7X7 order) and `win` only the live taps of the row LSTM input conv (spec.ROW_INPUT_TAPS:
  x-1 and x). Weight names: w7, b7 = layer{k}/brnn/adaptation0_masked7x7; w3s, b3s =
  adaptation1_conv3x3; win, wh, bl = brnn/row_lstm (input_conv, hidden_conv, bias); wa, ba and
  wb, bb = brnn/out1x1_a and _b; car = brnn/channel_ar; sa, sab and sb, sbb =
  state_block/conv3x3_a and _b; rin, rh, rb = layer_rnn/lstm; ra, rab and rbw, rbb =
  layer_rnn/out1x1_a and _b.
  """
  layer_depth: int
  layer_count: int
  hidden_depth: int          # h (spec.hidden_depth of the model_config)
  max_layers: int            # layers a code may have: coded_layer_count if > 0, else layer_count
  channel_causal: bool
  fingerprint: str
  source: str
  w7: np.ndarray             # [Lc, 24, cd, h]
  b7: np.ndarray             # [Lc, h]
  w3s: np.ndarray            # [Lc, 3, 3, cd, h]
  b3s: np.ndarray            # [Lc, h]
  win: np.ndarray            # [Lc, 2, 2h, 4h]   taps x-1, x
  wh: np.ndarray             # [Lc, 3, h, 4h]    taps x-1, x, x+1 of the previous row
  bl: np.ndarray             # [Lc, 4h]
  wa: np.ndarray             # [Lc, h, h]
  ba: np.ndarray             # [Lc, h]
  wb: np.ndarray             # [Lc, h, cd]
  bb: np.ndarray             # [Lc, cd]
  car: np.ndarray            # [Lc, cd, cd, h]   zeros unless channel_causal
  sa: np.ndarray             # [Lc, 3, 3, cd, h]
  sab: np.ndarray            # [Lc, h]
  sb: np.ndarray             # [Lc, 3, 3, h, cd]
  sbb: np.ndarray            # [Lc, cd]
  rin: np.ndarray            # [cd, 4h]
  rh: np.ndarray             # [h, 4h]
  rb: np.ndarray             # [4h]
  ra: np.ndarray             # [h, h]
  rab: np.ndarray            # [h]
  rbw: np.ndarray            # [h, cd]
  rbb: np.ndarray            # [cd]

  def layers_of(self, depth, source):
    """Number of layers of a code with `depth` channels; UserError if this model cannot code it
    (trainer.config.code_layers: the same check training makes, so what trained, codes)."""
    coded = self.max_layers if self.max_layers < self.layer_count else 0
    return code_layers(depth, self.layer_depth, self.layer_count, coded, source,
                       f'the model at {self.source}')


def build_network(model_files):
  """ModelFiles -> Network; UserError naming the model dir if a weight is missing or misshapen."""
  source = model_files.path or '<model>'
  # The one check of a model_config (the Trainer's), hidden_depth resolved.
  config = model_config_from_dict(model_files.model_config, f'{source} model_config')
  cd, count, causal, h = (config.layer_depth, config.layer_count, config.channel_causal,
                          config.hidden_depth)
  coded = config.coded_layer_count or count
  weights = model_files.weights
  shapes = spec.weight_shapes(config)
  for name, shape in shapes.items():
    if name not in weights:
      raise UserError(describe(source, f'weights.npz has no "{name}" (shape {list(shape)}); '
                               'the model does not match its model_config'))
    if tuple(weights[name].shape) != shape:
      raise UserError(describe(source, f'weight "{name}" has shape {list(weights[name].shape)}, '
                               f'expected {list(shape)} for model_config {config}'))
  for name, array in weights.items():
    if not np.all(np.isfinite(array)):
      raise UserError(describe(source, f'weight "{name}" holds NaN or infinite values'))

  def get(name):
    return np.asarray(weights[name], dtype=np.float64)

  def stacked(suffix, transform=lambda a: a):
    return np.ascontiguousarray(np.stack([transform(get(spec.layer_weight(k, suffix)))
                                          for k in range(count)]))

  ar_mask = channel_ar_mask(cd)
  return Network(
      layer_depth=cd, layer_count=count, hidden_depth=h, max_layers=coded, channel_causal=causal,
      fingerprint=model_files.fingerprint, source=source,
      w7=stacked('brnn/adaptation0_masked7x7/kernel',
                 lambda a: spec.live_kernel(a, spec.ADAPTATION0_MASK)),
      b7=stacked('brnn/adaptation0_masked7x7/bias'),
      w3s=stacked('brnn/adaptation1_conv3x3/kernel'),
      b3s=stacked('brnn/adaptation1_conv3x3/bias'),
      win=stacked('brnn/row_lstm/input_conv/kernel',
                  lambda a: spec.live_kernel(a, spec.ROW_INPUT_MASK)),
      wh=stacked('brnn/row_lstm/hidden_conv/kernel', lambda a: a[0]),
      bl=stacked('brnn/row_lstm/bias'),
      wa=stacked('brnn/out1x1_a/kernel', lambda a: a[0, 0]),
      ba=stacked('brnn/out1x1_a/bias'),
      wb=stacked('brnn/out1x1_b/kernel', lambda a: a[0, 0]),
      bb=stacked('brnn/out1x1_b/bias'),
      car=(stacked('brnn/channel_ar/kernel', lambda a: a * ar_mask) if causal
           else np.zeros((count, cd, cd, h))),
      sa=stacked('state_block/conv3x3_a/kernel'),
      sab=stacked('state_block/conv3x3_a/bias'),
      sb=stacked('state_block/conv3x3_b/kernel'),
      sbb=stacked('state_block/conv3x3_b/bias'),
      rin=np.ascontiguousarray(get('layer_rnn/lstm/input_conv/kernel')[0, 0]),
      rh=np.ascontiguousarray(get('layer_rnn/lstm/hidden_conv/kernel')[0, 0]),
      rb=get('layer_rnn/lstm/bias'),
      ra=np.ascontiguousarray(get('layer_rnn/out1x1_a/kernel')[0, 0]),
      rab=get('layer_rnn/out1x1_a/bias'),
      rbw=np.ascontiguousarray(get('layer_rnn/out1x1_b/kernel')[0, 0]),
      rbb=get('layer_rnn/out1x1_b/bias'),
  )
