"""The wavefront schedule (coder 2): derived from the masks, bit-exact against the raster one.

codec/schedule.py derives from the model's masks which other pixels a pixel reads, and from that
the slope s of the wavefront t = x + s*y; the engine codes a step's pixels together. A pixel's
arithmetic is the same whichever schedule runs it, so both give the same probabilities bit for
bit; only the order in which symbols enter the range coder (the coding order, part of the
format: coder id 2) differs.
"""
import dataclasses
import os

import numpy as np
import pytest

from helpers import reference_model
from entropy_coder import codec, model_files
from entropy_coder.codec import bitstream, engine, engine_weights, schedule
from entropy_coder.codec.range_coder import StreamDecoder, StreamEncoder
from entropy_coder.data_gen import synthetic
from entropy_coder.trainer import masks, spec
from entropy_coder.trainer.config import ModelConfig

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'codec_golden',
                      'reference_model_coder2_streams.bin')
# Set REGENERATE_CODEC_GOLDEN=1 to rewrite the golden file after a deliberate format change.
REGENERATE = os.environ.get('REGENERATE_CODEC_GOLDEN') == '1'
EDGE_SHAPES = [(1, 1), (1, 9), (9, 1), (2, 3), (5, 3), (3, 4), (7, 11), (6, 13)]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  return reference_model(str(tmp_path_factory.mktemp('reference_model')))


@pytest.fixture(scope='module')
def net(files):
  return engine_weights.build_network(files)


def _random_net(layer_depth, layers, causal, seed=3, scale=0.5):
  """A model with random weights of the right shapes (channel_ar masked), as a Network."""
  rng = np.random.default_rng(seed)
  config = ModelConfig(layer_depth=layer_depth, layer_count=layers, channel_causal=causal)
  weights = {name: rng.normal(0, scale, shape).astype(np.float32)
             for name, shape in spec.weight_shapes(config).items()}
  files = model_files.ModelFiles(weights=weights, fingerprint='0' * 64, path='<random>',
                                 model_config={'layer_depth': layer_depth, 'layer_count': layers,
                                               'coded_layer_count': 0, 'channel_causal': causal})
  return engine_weights.build_network(files)


def _causal(net, seed=7):
  rng = np.random.default_rng(seed)
  car = rng.normal(0.0, 0.8, net.car.shape) * engine_weights.channel_ar_mask(net.layer_depth)
  return dataclasses.replace(net, channel_causal=True, car=car)


# ---- the schedule, from the masks ---------------------------------------------------------------


def test_dependencies_and_slope_come_from_the_masks():
  deps = schedule.dependencies()
  # adaptation0's strict 7x7 mask: three rows above in full, three pixels to the left.
  strict = {(dy - 3, dx - 3) for dy, dx in zip(*np.nonzero(masks.raster_mask(7, 7, strict=True)))}
  assert strict == set(spec.TAPS_7X7) and len(strict) == 24
  assert set(deps) == strict | {(0, -1), (-1, -1), (-1, 0), (-1, 1)}
  # (-1, 3), a bit of the row above three pixels right, is what needs s = 4 (3 - s < 0).
  assert schedule.SLOPE == schedule.wavefront_slope(deps) == 4
  assert schedule.wavefront_slope(tuple(d for d in deps if d != (-1, 3))) == 3  # (-1, 2) -> 3
  assert schedule.wavefront_slope(tuple(d for d in deps if d[1] < 2 or d[0] < -1)) == 2
  # A wider mask needs a steeper wavefront; a dependency on the right of the same row, none.
  wider = spec.live_taps(masks.raster_mask(9, 9, strict=True))
  assert schedule.wavefront_slope(wider) == 5
  with pytest.raises(ValueError):
    schedule.wavefront_slope(deps + ((0, 1),))
  # The slope is the smallest that works.
  for s in range(schedule.SLOPE):
    assert any(dx + s * dy >= 0 for dy, dx in deps)


@pytest.mark.parametrize('shape', EDGE_SHAPES + [(16, 40)])
def test_every_dependency_is_in_an_earlier_step(shape):
  height, width = shape
  sched = schedule.wavefront(height, width)
  step = np.empty((height, width), np.int64)
  for i in range(sched.steps):
    for y, x in sched.pixels[sched.starts[i]:sched.starts[i + 1]]:
      step[y, x] = i
  assert sorted(map(tuple, sched.pixels.tolist())) == [(y, x) for y in range(height)
                                                       for x in range(width)]
  for y in range(height):
    for x in range(width):
      for dy, dx in schedule.dependencies():
        if 0 <= y + dy < height and 0 <= x + dx < width:
          assert step[y + dy, x + dx] < step[y, x]
  assert sched.widest == min(height, -(-width // schedule.SLOPE))
  assert sorted(sched.row_done[sched.row_done >= 0].tolist()) == list(range(height))
  raster = schedule.raster(height, width)
  assert raster.steps == height * width and raster.widest == 1


# ---- the engine: bit-exact against the raster schedule ------------------------------------------


def _codes(shape, depth, batch, seed):
  rng = np.random.default_rng(seed)
  return (rng.random((batch,) + shape + (depth,)) < 0.35).astype(np.uint8)


def _stream_round_trip(net, codes, coder_id):
  """Encodes with ChunkCoder + the range coder, decodes -> (codes, stream, layer_done arrays of
  encoder and decoder)."""
  batch, height, width, depth = codes.shape
  layers = depth // net.layer_depth
  encoder = StreamEncoder()
  seen = {'encode': {}, 'decode': {}}

  def keep(store, encoder=None):
    def layer_done(k, out_p, out_q, bits):
      store[k] = (out_p.copy(), out_q.copy(), bits.copy())
      if encoder is not None:
        encoder.encode(bits, out_q)
    return layer_done

  engine.ChunkCoder(net, batch, height, width, layers, coder_id).encode(
      codes, keep(seen['encode'], encoder))
  stream = encoder.finish()
  decoder = StreamDecoder(stream, '<test>')
  decoded = engine.ChunkCoder(net, batch, height, width, layers, coder_id).decode(
      decoder.decode, keep(seen['decode']))
  decoder.check_consumed()
  return decoded, stream, seen


@pytest.mark.parametrize('kind', ['reference', 'causal', 'depth1', 'depth32'])
def test_wavefront_decode_is_bit_exact_against_the_raster_schedule(net, kind):
  if kind == 'reference':
    model, depth, shapes = net, 8, EDGE_SHAPES
  elif kind == 'causal':
    model, depth, shapes = _causal(net), 6, EDGE_SHAPES
  elif kind == 'depth1':
    model, depth, shapes = _random_net(1, 3, False), 3, EDGE_SHAPES
  else:
    model, depth, shapes = _random_net(32, 2, True, scale=0.2), 64, [(1, 1), (3, 5), (4, 9)]
  for i, shape in enumerate(shapes):
    codes = _codes(shape, depth, 2, seed=i)
    raster = engine.engine_probabilities(model, codes, bitstream.CODER_RASTER)
    wave = engine.engine_probabilities(model, codes, bitstream.CODER_WAVEFRONT)
    for a, b in zip(raster, wave):
      assert np.array_equal(a, b), (kind, shape)  # bit for bit, not approximately
    decoded, _, seen = _stream_round_trip(model, codes, bitstream.CODER_WAVEFRONT)
    assert np.array_equal(decoded, codes), (kind, shape)
    for k, (p, q, bits) in seen['encode'].items():
      assert all(np.array_equal(a, b) for a, b in zip((p, q, bits), seen['decode'][k]))
  # Not vacuous: the probabilities vary from pixel to pixel, so any reordering would show.
  assert len(np.unique(raster[0])) > 10


@pytest.mark.parametrize('causal', [False, True])
def test_lanes_of_pixels_compute_what_lanes_of_samples_do(net, causal):
  """With fewer than engine.LANES samples the engine fills its lanes with several pixels of a
  step (and of a row, for the state); with LANES samples, with samples only: the same bits."""
  model = _causal(net) if causal else net
  codes = _codes((5, 11), 6, engine.LANES, seed=11)
  for coder_id in (bitstream.CODER_RASTER, bitstream.CODER_WAVEFRONT):
    full = engine.engine_probabilities(model, codes, coder_id)
    for i in (0, engine.LANES - 1):
      alone = engine.engine_probabilities(model, codes[i:i + 1], coder_id)
      assert all(np.array_equal(a[i:i + 1], b) for a, b in zip(full, alone)), (coder_id, i)


def test_coding_order_is_the_schedule_with_the_sample_innermost(net):
  """layer_done's arrays reshape(-1, B): column b is code b alone, in the schedule's order."""
  codes = _codes((5, 9), 4, 3, seed=5)
  for model in (net, _causal(net)):
    _, _, seen = _stream_round_trip(model, codes, bitstream.CODER_WAVEFRONT)
    _, _, alone = _stream_round_trip(model, codes[1:2], bitstream.CODER_WAVEFRONT)
    sched = schedule.wavefront(5, 9)
    positions = schedule.raster_positions(sched, 9, 2, model.channel_causal)
    for k in seen['encode']:
      columns = seen['encode'][k][2].reshape(-1, 3)
      assert np.array_equal(columns[:, 1], alone['encode'][k][2])
      raster = codes[1, ..., spec.layer_channels(k, 2)].reshape(-1)
      assert np.array_equal(columns[:, 1], raster[positions])
      assert np.array_equal(seen['encode'][k][1].reshape(-1, 3)[:, 1], alone['encode'][k][1])


def test_known_layers_decode_with_the_wavefront(net):
  codes = _codes((6, 10), 8, 2, seed=9)
  for model in (net, _causal(net)):
    _, stream, seen = _stream_round_trip(model, codes, bitstream.CODER_WAVEFRONT)
    known = {2: codes[..., spec.layer_channels(2, 2)]}
    # A stream of every layer but layer 2, in coding order.
    encoder = StreamEncoder()
    for k in sorted(seen['encode']):
      if k not in known:
        encoder.encode(seen['encode'][k][2], seen['encode'][k][1])
    decoder = StreamDecoder(encoder.finish(), '<test>')
    got = {}
    decoded = engine.ChunkCoder(model, 2, 6, 10, 4).decode(
        decoder.decode, lambda k, p, q, b: got.setdefault(k, q.copy()), known=known)
    decoder.check_consumed()
    assert np.array_equal(decoded, codes)
    assert all(np.array_equal(got[k], seen['encode'][k][1]) for k in got)


# ---- through codec.api: coder 2 written, coder 1 still read -------------------------------------


def test_api_round_trip_writes_coder_2_and_its_bytes_do_not_depend_on_threads_or_batch(files):
  codes = list(synthetic.generate_codes(seed=3, indices_or_start=0, count=70, shape=(9, 13, 4)))
  codes += [np.ones((1, 1, 2), np.uint8), np.zeros((1, 7, 6), np.uint8), _codes((5, 3), 4, 1, 1)[0]]
  data = codec.compress(codes, files, threads=2)
  header = codec.read_header(data)
  assert header.coder_id == bitstream.CODER_WAVEFRONT == bitstream.CODER_ID
  assert len(header.chunks) >= 3  # two chunks of the 70 codes, and the odd shapes
  assert codec.compress(codes, files, threads=1) == data
  restored = codec.decompress(data, files, threads=1)
  assert all(np.array_equal(a, b) for a, b in zip(restored, codes))
  # A code's stream is the same alone as among others (one file per code, batched).
  each = list(codec.compress_each([([code], bitstream.SOURCE_API, 0) for code in codes[:3]],
                                  files, theory=False))
  for code, (one, _) in zip(codes[:3], each):
    assert one == codec.compress([code], files)
    assert np.array_equal(codec.decompress(one, files)[0], code)


def test_old_coder_1_files_still_decode(files):
  codes = list(synthetic.generate_codes(seed=2024, indices_or_start=0, count=3, shape=(6, 7, 4)))
  codes.append(np.ones((2, 3, 2), np.uint8))
  golden_dir = os.path.dirname(GOLDEN)
  for name in ('reference_model_v1.nec', 'reference_model_v2.nec'):
    with open(os.path.join(golden_dir, name), 'rb') as f:
      old = f.read()
    assert codec.read_header(old).coder_id == bitstream.CODER_RASTER
    assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(old, files), codes))
  # Version 1 is for old readers: it is still written with coder 1.
  v1 = codec.compress(codes, files, format_version=1)
  assert codec.read_header(v1).coder_id == bitstream.CODER_RASTER
  assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(v1, files), codes))


def test_golden_coder_2_streams_are_stable(net):
  """The range-coder streams of coder 2 (the container around them is docs/FORMAT.md's and
  pinned by test_codec_roundtrip.py): the reference model on the golden files' codes."""
  codes = list(synthetic.generate_codes(seed=2024, indices_or_start=0, count=3, shape=(6, 7, 4)))
  streams = [_stream_round_trip(net, np.stack(codes), bitstream.CODER_WAVEFRONT)[1],
             _stream_round_trip(net, np.ones((1, 2, 3, 2), np.uint8), bitstream.CODER_WAVEFRONT)[1],
             _stream_round_trip(_causal(net), np.stack(codes), bitstream.CODER_WAVEFRONT)[1]]
  data = b''.join(len(s).to_bytes(4, 'little') + s for s in streams)
  if REGENERATE:
    with open(GOLDEN, 'wb') as f:
      f.write(data)
  with open(GOLDEN, 'rb') as f:
    golden = f.read()
  assert data == golden, 'coder 2 streams changed: bump bitstream.CODER_ID and regenerate'
  # The wavefront's streams are not the raster's (same probabilities, another order).
  raster = _stream_round_trip(net, np.stack(codes), bitstream.CODER_RASTER)[1]
  assert raster != streams[0]
