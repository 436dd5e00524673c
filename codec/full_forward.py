"""The whole progressive model on complete codes, in plain numpy (float64).

This is the readable statement of the network's arithmetic that the incremental engine
(`engine.py`) must agree with; the model's facts (taps, gates, clip, widths) are those of
trainer/spec.py. The codec never codes with it: it is the reference the tests compare against,
and the naive decoder's per-layer state (`naive.py`).

    x_k = 2*code[..., k*cd:(k+1)*cd] - 1            s_0 = 0, layer_rnn (h, c) = 0
    a   = concat(T(masked7x7(x_k)), T(conv3x3(s_k)))
    row LSTM down the rows: z = conv1x3_masked(a[y]) + bias + conv1x3(h[y-1])  -> spec.lstm_cell
    pred_k = T(out1x1_b(T(out1x1_a(h))))            P(1) = (clip(pred, +-spec.PRED_CLIP) + 1) / 2
    s_{k+1} = T(R_b(T(R_a(layer_rnn_LSTM(T(state_b(T(state_a(x_k)))))))))
"""
import numpy as np

from entropy_coder.trainer import spec


_TAPS_3X3 = spec.live_taps(np.ones((3, 3)))  # all nine, in raster order


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _shifted(x, dy, dx):
  """out[:, y, x] = x[:, y+dy, x+dx] with zeros outside (SAME zero padding)."""
  _, height, width, _ = x.shape
  out = np.zeros_like(x)
  ys, ye = max(0, -dy), min(height, height - dy)
  xs, xe = max(0, -dx), min(width, width - dx)
  if ys < ye and xs < xe:
    out[:, ys:ye, xs:xe] = x[:, ys + dy:ye + dy, xs + dx:xe + dx]
  return out


def _taps(x, taps, kernel, bias):
  """bias + sum over t of x shifted by taps[t] = (dy, dx), times kernel[t] [cin, cout]."""
  out = bias + np.zeros(x.shape[:3] + (kernel.shape[-1],))
  for (dy, dx), weights in zip(taps, kernel):
    out += _shifted(x, dy, dx) @ weights
  return out


def _conv3x3(x, kernel, bias):
  return _taps(x, _TAPS_3X3, kernel.reshape((9,) + kernel.shape[2:]), bias)


def _lstm_gates(z, c_prev):
  """spec.lstm_cell on the last axis."""
  return spec.lstm_cell(z, c_prev, _sigmoid, np.tanh, lambda v, n: np.split(v, n, axis=-1))


def _layer_prediction(net, k, x, s):
  """pred_k [B,H,W,cd] of layer k from its ±1 bits x and the state s."""
  _, height, width, _ = x.shape
  hd = net.hidden_depth
  a0 = _taps(x, spec.TAPS_7X7, net.w7[k], net.b7[k])
  a = spec.row_input(lambda parts: np.concatenate(parts, axis=-1), adaptation0=np.tanh(a0),
                     adaptation1=np.tanh(_conv3x3(s, net.w3s[k], net.b3s[k])))
  z_in = _taps(a, spec.ROW_INPUT_TAPS, net.win[k], net.bl[k])
  h = np.zeros((x.shape[0], width, hd))
  c = np.zeros_like(h)
  rows = []
  for y in range(height):
    z = z_in[:, y].copy()
    for kx in range(3):
      z += _shifted(h[:, None], 0, kx - 1)[:, 0] @ net.wh[k, kx]
    h, c = _lstm_gates(z, c)
    rows.append(h)
  t0 = np.stack(rows, axis=1) @ net.wa[k] + net.ba[k]
  if not net.channel_causal:
    return np.tanh(np.tanh(t0) @ net.wb[k] + net.bb[k])
  preds = []
  for ch in range(net.layer_depth):
    t = t0 + sum(x[..., j, None] * net.car[k, j, ch] for j in range(ch))
    preds.append(np.tanh(np.tanh(t) @ net.wb[k][:, ch] + net.bb[k][ch]))
  return np.stack(preds, axis=-1)


def _next_state(net, k, x, rnn_h, rnn_c):
  u = np.tanh(_conv3x3(x, net.sa[k], net.sab[k]))
  v = np.tanh(_conv3x3(u, net.sb[k], net.sbb[k]))
  rnn_h, rnn_c = _lstm_gates(v @ net.rin + net.rb + rnn_h @ net.rh, rnn_c)
  s = np.tanh(np.tanh(rnn_h @ net.ra + net.rab) @ net.rbw + net.rbb)
  return s, rnn_h, rnn_c


def full_forward(net, codes, layers=None):
  """codes uint8 [B,H,W,D] in {0,1} -> P(bit=1) float64 [B,H,W,layers*cd].

  `layers` defaults to all of D/cd; fewer computes only the first layers (the naive decoder).
  """
  codes = np.asarray(codes)
  cd = net.layer_depth
  if layers is None:
    layers = net.layers_of(codes.shape[-1], '<codes>')
  x_all = 2.0 * codes.astype(np.float64) - 1.0
  batch, height, width, _ = codes.shape
  hd = net.hidden_depth
  s = np.zeros((batch, height, width, cd))
  rnn_h = np.zeros((batch, height, width, hd))
  rnn_c = np.zeros_like(rnn_h)
  probs = []
  for k in range(layers):
    x = x_all[..., spec.layer_channels(k, cd)]
    pred = _layer_prediction(net, k, x, s)
    probs.append(spec.probability(pred, np.clip))
    if k + 1 < layers:
      s, rnn_h, rnn_c = _next_state(net, k, x, rnn_h, rnn_c)
  return np.concatenate(probs, axis=-1)


def code_length_bits(probs, codes):
  """Sum of -log2 P(true bit) per sample: the theoretical size of an ideal entropy coder."""
  codes = np.asarray(codes)
  p_true = np.where(codes[..., :probs.shape[-1]] == 1, probs, 1.0 - probs)
  return -np.log2(p_true).reshape(p_true.shape[0], -1).sum(axis=1)
