"""Real-codes benchmark: the entropy coder on codes of real pictures, beside the strongest
classical coders, in real bytes of one file per unseen image.

What one run does (all in this process, so the numbers belong together):
1. takes the pictures that ship inside installed packages (entropy_coder.data_gen.sample_images:
   matplotlib's sample_data and scikit-learn's images; no network), as gray, and splits them BY
   PICTURE: TRAIN pictures to train on, a VALIDATION picture to pick the best checkpoint (the
   Trainer exports the evaluation with the lowest eval code length), TEST pictures never seen;
2. makes two kinds of code of each at its own size (entropy_coder.data_gen.image_codes): the 8
   bit planes of the gray picture, and the 16 successive-approximation bits of its 8x8 block
   means;
3. per run of RUNS (a kind and a model config): trains `train_loop.Trainer.fit` for `--steps` on
   the training pictures' whole codes (and those of their flips, transposes and, for successive
   approximation, half-block shifts: `training_variants`), each its own size, in tiles of TILES (train_config
   `crop`, seams moved every epoch), evaluating the validation code at full size; writes
   the best evaluation's model files, and compresses each TEST code at full size into its own
   one-code `.nec` file with `codec.api.compress_with_stats`: its bytes are the real figure,
   its -log2 P sum the theoretical one;
4. on the same TEST codes: xz -9e (lzma preset 9 | EXTREME), zstd -19, bz2 -9 on the packed
   codes (the better of two bit orders: the product's pixel-interleaved [H, W, D] and plane by
   plane [D, H, W]); an adaptive order-0 coder per channel (Krichevsky-Trofimov counts, its
   ideal code length) and a small context model (the same counts per channel and per context
   of the left, upper and previous-channel bits: `adaptive_context_bits`); JPEG XL lossless at the strongest effort (imagecodecs, effort 10) on the
   gray picture (bit planes) and on each block's 16-bit integer q (successive approximation),
   and, as a stronger variant, on the 14-bit block sum q / 4 that carries the same information.

Every figure is bits per code bit, pooled: total bytes * 8 over total code bits of the TEST
pictures, each coded as its own file. Writes `--out` (JSON) and `--plot` (PNG); prints a
markdown table (docs/REAL_CODES.md holds the measured one).

    .venv/bin/python bench/bench_real_codes.py --out /tmp/real_codes.json --plot docs/images/real_codes.png
    .venv/bin/python bench/bench_real_codes.py --quick     # smoke run, about a minute
"""
import argparse
import bz2
import json
import lzma
import math
import os
import sys
import shutil
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN = ('grace_hopper', 'china', 'topobathy')
VALIDATION = ('jacksboro_dem',)
TEST = ('flower', 'mri_s1045')

# kind -> the training tile side, train_config `crop` (in the codes' own pixels: 1 per picture
# pixel for bit planes, 1 per 8x8 block for successive approximation). The Trainer cuts each
# whole training code into tiles with seams that move every epoch (trainer/data.py).
TILES = {'bit_planes': 32, 'successive_approximation': 16, 'neural': 16}

JPEGXL_EFFORT = 10  # libjxl's strongest (imagecodecs clamps larger values to it)
XZ_PRESET = 9 | lzma.PRESET_EXTREME
ZSTD_LEVEL = 19
BZ2_LEVEL = 9

# The container version whose files code every layer in the model's stream (no fallback), and
# the one with the fallback but without mixing (the model's own stream).
MODEL_ONLY_VERSION = 2
UNMIXED_VERSION = 3
# Each run's files are also written in these older containers: figure name -> version.
OLDER_CONTAINERS = {'model_only': MODEL_ONLY_VERSION, 'unmixed': UNMIXED_VERSION}

BASE_TRAIN = {'batch_size': 16, 'learning_rate': 0.01, 'decay_rate': 0.9,
              'samples_per_decay': 20000, 'adam_epsilon': 0.001}


def _run(label, kind, model, **train):
  return {'label': label, 'kind': kind, 'model': model, 'train': dict(BASE_TRAIN, **train)}


BP, SA, NEURAL = 'bit_planes', 'successive_approximation', 'neural'
RUNS = (
    _run('bp ld1 L8', BP, {'layer_depth': 1, 'layer_count': 8}),
    _run('bp ld1 L8 h16', BP, {'layer_depth': 1, 'layer_count': 8, 'hidden_depth': 16}),
    _run('bp ld8 cc', BP, {'layer_depth': 8, 'layer_count': 1, 'channel_causal': True}),
    _run('bp ld8 cc h32', BP, {'layer_depth': 8, 'layer_count': 1, 'channel_causal': True,
                               'hidden_depth': 32}),
    _run('sa ld1 L16', SA, {'layer_depth': 1, 'layer_count': 16}),
    _run('sa ld1 L16 h16', SA, {'layer_depth': 1, 'layer_count': 16, 'hidden_depth': 16}),
    _run('sa ld2 L8', SA, {'layer_depth': 2, 'layer_count': 8}),
    _run('sa ld2 L8 cc h16', SA, {'layer_depth': 2, 'layer_count': 8, 'channel_causal': True,
                                  'hidden_depth': 16}),
    # All 16 bits of a block as one channel-causal layer: each bit sees the higher bits of its
    # block and every bit of the blocks before it, as a predictive image coder does.
    _run('sa ld16 cc', SA, {'layer_depth': 16, 'layer_count': 1, 'channel_causal': True}),
    _run('sa ld16 cc h64', SA, {'layer_depth': 16, 'layer_count': 1, 'channel_causal': True,
                                'hidden_depth': 64}),
    _run('sa ld16 cc wd1e-4', SA, {'layer_depth': 16, 'layer_count': 1, 'channel_causal': True},
         weight_decay=1e-4),
    _run('sa ld16 cc wd1e-3', SA, {'layer_depth': 16, 'layer_count': 1, 'channel_causal': True},
         weight_decay=1e-3),
)
# The default run (about 15 minutes on 2 cores); `--runs all` adds the slow ones (a wide LSTM
# over 8 or 16 sequential layers trains at a few samples/s here) and the other capacities.
DEFAULT_RUNS = ('bp ld1 L8', 'bp ld8 cc', 'bp ld8 cc h32', 'sa ld1 L16', 'sa ld2 L8',
                'sa ld16 cc', 'sa ld16 cc wd1e-3')
QUICK_RUNS = ('bp ld8 cc', 'sa ld16 cc')


def _parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=300, help='training steps per run')
  parser.add_argument('--eval-every', type=int, default=50, help='validation every N steps')
  parser.add_argument('--runs', nargs='+', help='labels of RUNS to do, "all", or "neural" (the '
                      '--encoder runs alone) (default: '
                      f'{list(DEFAULT_RUNS)}); all runs: {[r["label"] for r in RUNS]}')
  parser.add_argument('--encoder', metavar='DIR',
                      help='also the codes of this trained image encoder (`entropy-coder '
                      'train-encoder`): the "neural" kind, with bits per pixel per iteration')
  parser.add_argument('--no-augment', action='store_true',
                      help='train on the TRAIN pictures only, without their flips and shifts')
  parser.add_argument('--verify', action='store_true',
                      help='also decompress every file and check it gives its code back')
  parser.add_argument('--quick', action='store_true',
                      help=f'smoke run: {QUICK_RUNS}, 20 steps, the test pictures cropped to 64x64')
  parser.add_argument('--seed', type=int, default=0, help='model init and shuffle seed')
  parser.add_argument('--keep-models', metavar='DIR',
                      help='also write each run\'s exported model to DIR/<label> (for '
                      '--models later)')
  parser.add_argument('--models', metavar='DIR',
                      help='no training: compress with the models a --keep-models run wrote '
                      'to DIR/<label> (its JSON still holds the training figures)')
  parser.add_argument('--out', help='results JSON')
  parser.add_argument('--plot', help='PNG bar chart')
  parser.add_argument('--from-json', nargs='+', metavar='JSON',
                      help='no measuring: print the table and plot of saved results JSONs (the '
                      'runs of later ones are added to the first; labels say their step count '
                      'where it differs)')
  return parser.parse_args()


def _log(line):
  print(f'[{time.strftime("%H:%M:%S")}] {line}', file=sys.stderr, flush=True)


# ---- the pictures and their codes --------------------------------------------------------------


def pictures(quick=False):
  """{name: uint8 gray [H, W]} of TRAIN + VALIDATION + TEST (TEST cropped to 64x64 if quick)."""
  from entropy_coder.data_gen import sample_images  # pylint: disable=g-import-not-at-top
  result = {}
  for photo in sample_images.packaged_photos(TRAIN + VALIDATION + TEST):
    gray = sample_images.gray(photo.pixels)
    result[photo.name] = gray[:64, :64] if quick and photo.name in TEST else gray
  return result


def code_maker(kind, encoder=None):
  """gray picture -> its code of `kind` (NEURAL: the trained image encoder `encoder`)."""
  if kind == NEURAL:
    from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
    return lambda gray: api.encode_image(gray, encoder)
  from entropy_coder.data_gen import image_codes  # pylint: disable=g-import-not-at-top
  return lambda gray: image_codes.code_of(kind, gray)


def codes_of(make, grays):
  return {name: make(gray) for name, gray in grays.items()}


def neural_runs(encoder):
  """The runs of the NEURAL kind: one layer per encoder iteration, with and without
  channel_causal."""
  from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
  config = api.load_encoder(encoder).config
  depth, layers = config.bits_per_iteration, config.iterations
  return [_run(f'neural ld{depth} L{layers}{suffix}', NEURAL,
               dict({'layer_depth': depth, 'layer_count': layers}, **extra))
          for suffix, extra in (('', {}), (' cc', {'channel_causal': True}))]


def neural_iterations(encoder, grays, model, api_module):
  """Per TEST picture and iteration k: bits per pixel of the original picture before (the
  raw code of k iterations) and after entropy coding (its one-code .nec file), and PSNR."""
  from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
  layer_depth = api.load_encoder(encoder).config.bits_per_iteration
  rows = []
  for name in TEST:
    encoded = api.encode(grays[name], encoder)
    pixels = grays[name].size
    for k in range(1, encoded.code.shape[-1] // layer_depth + 1):
      part = np.ascontiguousarray(encoded.code[..., :k * layer_depth])
      data = api_module.compress_with_stats([part], model, theory=False)[0]
      rows.append({'picture': name, 'iterations': k, 'raw_bpp': part.size / pixels,
                   'coded_bpp': 8 * len(data) / pixels,
                   'psnr_db': api.psnr(grays[name], encoded.reconstructions[k - 1])})
  return rows


def _write_tfrecord(path, codes):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for code in codes:
      writer.write(codes_format.encode_example(code))
  return path


def training_variants(kind, gray):
  """More training codes from one TRAIN picture: its 8 flips and transposes (the dihedral
  group: a picture's statistics hardly depend on its orientation, a causal model's contexts
  do), and for successive approximation also the 8x8 block grid shifted by half a block
  ((0, 0), (0, 4), (4, 0), (4, 4) pixels), which gives other block means.
  -> list of uint8 gray pictures."""
  offsets = ((0, 0), (0, 4), (4, 0), (4, 4)) if kind == SA else ((0, 0),)  # NEURAL: as BP
  variants = []
  for dy, dx in offsets:
    shifted = gray[dy:, dx:]
    for turned in (shifted, shifted.T):
      variants += [turned, turned[::-1], turned[:, ::-1], turned[::-1, ::-1]]
  return [np.ascontiguousarray(v) for v in variants]


def training_files(kind, make, grays, codes, data_dir, augment=True):
  """(train TFRecord, validation TFRecord, training code count): whole codes, each its own
  size; the TRAIN pictures' `training_variants` unless `augment` is False."""
  train = ([make(variant) for name in TRAIN
            for variant in training_variants(kind, grays[name])] if augment
           else [codes[name] for name in TRAIN])
  return (_write_tfrecord(os.path.join(data_dir, f'{kind}_train.tfrecord.gz'), train),
          _write_tfrecord(os.path.join(data_dir, f'{kind}_validation.tfrecord.gz'),
                          [codes[name] for name in VALIDATION]),
          len(train))


# ---- the classical coders ------------------------------------------------------------------------


def _packed_orders(code):
  """The packed code in the product's bit order ([H, W, D], C order) and plane by plane."""
  return (np.packbits(code.reshape(-1)).tobytes(),
          np.packbits(np.moveaxis(code, -1, 0).reshape(-1)).tobytes())


def _zstd(data):
  import zstandard  # pylint: disable=g-import-not-at-top
  return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)


GENERAL_CODERS = {
    'xz -9e': lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, preset=XZ_PRESET),
    'zstd -19': _zstd,
    'bz2 -9': lambda data: bz2.compress(data, BZ2_LEVEL),
}


def _jpegxl_bytes(image, bits_per_sample=None):
  import imagecodecs  # pylint: disable=g-import-not-at-top
  data = imagecodecs.jpegxl_encode(image, lossless=True, effort=JPEGXL_EFFORT,
                                   bitspersample=bits_per_sample)
  if not np.array_equal(imagecodecs.jpegxl_decode(data), image):
    raise AssertionError('JPEG XL lossless did not round-trip')
  return len(data)


def _kt_bits(ones, totals):
  """Ideal code length of adaptive KT counts (from 1/2, 1/2) over sequences with these totals
  and counts of ones: KT's probability of a sequence depends only on its counts, so this is
  exact whatever the order: sum of -log2 (G(n0+1/2) G(n1+1/2) / (pi G(n+1)))."""
  total = 0.0
  for n1, n in zip(ones, totals):
    n1, n = int(n1), int(n)
    if n:
      total -= (math.lgamma(n - n1 + 0.5) + math.lgamma(n1 + 0.5) - math.log(math.pi)
                - math.lgamma(n + 1)) / math.log(2)
  return total


def adaptive_order0_bits(code):
  """Ideal code length of an adaptive order-0 coder per channel (Krichevsky-Trofimov counts
  from 1/2, 1/2)."""
  flat = code.reshape(-1, code.shape[-1]).astype(np.int64)
  return _kt_bits(flat.sum(axis=0), np.full(flat.shape[1], flat.shape[0]))


def adaptive_context_bits(code):
  """Ideal code length of a small context model: adaptive KT counts per channel and per
  context (the bit to the left, the bit above and the previous channel's bit of the same pixel;
  0 beyond the edges), 8 contexts a channel, coded in raster order: a classical causal
  baseline with the neighbours a picture coder would look at."""
  code = code.astype(np.int64)
  height, width, depth = code.shape
  left = np.zeros_like(code)
  left[:, 1:] = code[:, :-1]
  up = np.zeros_like(code)
  up[1:] = code[:-1]
  previous = np.zeros_like(code)
  previous[..., 1:] = code[..., :-1]
  context = (np.arange(depth) * 8 + left + 2 * up + 4 * previous).reshape(-1)
  ones = np.bincount(context, weights=code.reshape(-1), minlength=8 * depth)
  totals = np.bincount(context, minlength=8 * depth)
  return _kt_bits(ones, totals)


def classical(kind, grays, codes):
  """{coder name: (total bits, per-picture bits)} over the TEST pictures, one file each."""
  from entropy_coder.data_gen import image_codes  # pylint: disable=g-import-not-at-top
  rows = {}

  def add(name, picture, bits):
    total, per = rows.setdefault(name, (0.0, {}))
    per[picture] = bits
    rows[name] = (total + bits, per)

  for name in TEST:
    code = codes[name]
    orders = _packed_orders(code)
    for coder, compress in GENERAL_CODERS.items():
      add(coder, name, 8 * min(len(compress(data)) for data in orders))
    add('adaptive order-0 (ideal)', name, adaptive_order0_bits(code))
    add('adaptive context model (ideal)', name, adaptive_context_bits(code))
    if kind == BP:
      add('JPEG XL lossless (gray)', name, 8 * _jpegxl_bytes(grays[name]))
    elif kind == SA:
      q = image_codes.code_integers(code)
      add('JPEG XL lossless (16-bit q)', name, 8 * _jpegxl_bytes(q))
      add('JPEG XL lossless (14-bit sum)', name,
          8 * _jpegxl_bytes((q // 4).astype(np.uint16), bits_per_sample=14))
  return rows


# ---- the entropy coder ---------------------------------------------------------------------------


def _model_dir_of(root, label):
  return os.path.join(root, label.replace(' ', '_'))


def train_and_compress(run, codes, files, steps, eval_every, seed, work_dir, verify, grays=None,
                       encoder=None, keep_models=None, models=None):
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.codec import api  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import config as config_lib  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import model as model_lib  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import train_loop  # pylint: disable=g-import-not-at-top
  model_config = config_lib.model_config_from_dict(run['model'], run['label'])
  train_config = config_lib.train_config_from_dict(dict(run['train'], crop=TILES[run['kind']]),
                                                   run['label'])
  if models:  # a kept model: its training figures come from the run that kept it
    model_dir = os.path.join(_model_dir_of(models, run['label']), 'model')
    with open(os.path.join(_model_dir_of(models, run['label']), 'training.json')) as f:
      training = json.load(f)
  else:
    train_file, validation_file, _ = files
    run_dir = tempfile.mkdtemp(prefix='run_', dir=work_dir)
    trainer = train_loop.Trainer(model_config, train_config, run_dir, seed=seed, xla=False)
    start = time.perf_counter()
    result = trainer.fit(train_file, steps, eval_patterns=validation_file,
                         log_every=max(eval_every, 1), eval_every=eval_every,
                         progress=lambda line: _log(f'{run["label"]}: {line}'))
    best = trainer.best
    training = {'steps': result.steps, 'train_code_length': result.train_code_length,
                'validation_last': result.eval_code_length,
                'kept_step': best.step if best else result.steps,
                'validation_kept': best.eval_code_length if best else result.eval_code_length,
                'train_seconds': time.perf_counter() - start}
    model_dir = os.path.join(run_dir, 'model')
    with trainer.best_weights():
      model_files.write_model_files(model_dir, trainer.model.named_weights(),
                                    model_config.to_dict())
    if keep_models:
      kept = _model_dir_of(keep_models, run['label'])
      shutil.copytree(model_dir, os.path.join(kept, 'model'), dirs_exist_ok=True)
      with open(os.path.join(kept, 'training.json'), 'w') as f:
        json.dump(training, f, indent=1)
  model = model_files.read_model_files(model_dir)
  from entropy_coder.codec import bitstream  # pylint: disable=g-import-not-at-top
  per_picture, file_bits, theory_bits, code_bits = {}, 0, 0.0, 0
  older_bits = dict.fromkeys(OLDER_CONTAINERS, 0)
  start = time.perf_counter()
  for name in TEST:
    code = codes[name]
    data, stats = api.compress_with_stats([code], model)
    if verify and not np.array_equal(api.decompress(data, model)[0], code):
      raise AssertionError(f'{run["label"]}: {name} did not round-trip')
    per_picture[name] = dict(vars(stats))  # sizes, and the method choices when the API has them
    for figure, version in OLDER_CONTAINERS.items():
      if bitstream.VERSION > version:  # the same code in the older container too
        per_picture[name][f'{figure}_file_bytes'] = api.compress_with_stats(
            [code], model, theory=False, format_version=version)[1].file_bytes
      older_bits[figure] += 8 * per_picture[name].get(f'{figure}_file_bytes', stats.file_bytes)
    file_bits += 8 * stats.file_bytes
    theory_bits += stats.theoretical_bits
    code_bits += stats.code_bits
  codec_seconds = time.perf_counter() - start
  iterations = (neural_iterations(encoder, grays, model, api) if run['kind'] == NEURAL else None)
  return {
      'label': run['label'], 'kind': run['kind'], 'model_config': model_config.to_dict(),
      'train_config': train_config.to_dict(),
      'parameters': model_lib.parameter_count(model_config),
      **training,
      'overfitting_note': train_loop.overfitting_note(training['train_code_length'],
                                                      training['validation_last']),
      'real_bits_per_bit': file_bits / code_bits, 'theory_bits_per_bit': theory_bits / code_bits,
      **{f'{figure}_real_bits_per_bit': bits / code_bits for figure, bits in older_bits.items()},
      'format_version': bitstream.VERSION,
      'per_picture': per_picture,
      'codec_seconds': codec_seconds, 'neural_iterations': iterations,
  }


# ---- report --------------------------------------------------------------------------------------


def table(results):
  """Markdown: per kind, the entropy coder's runs (real and theory) and the classical coders."""
  lines = []
  for kind in (BP, SA, NEURAL):
    if kind not in results['classical']:
      continue
    code_bits = results['test_code_bits'][kind]
    lines += [f'**{kind}** ({", ".join(TEST)}: {code_bits} code bits)', '',
              '| coder | bits/bit (real files) | without mixing (v3) | model stream only (v2) | '
              'theory | validation (kept step / last) | train |', '|---|---|---|---|---|---|---|']
    for run in results['runs']:
      if run['kind'] == kind:
        lines.append(f'| entropy coder {run["label"]} ({run["parameters"]} weights) | '
                     f'**{run["real_bits_per_bit"]:.4f}** | '
                     f'{_figure(run, "unmixed_real_bits_per_bit")} | '
                     f'{run["model_only_real_bits_per_bit"]:.4f} | {run["theory_bits_per_bit"]:.4f} | '
                     f'{run["validation_kept"]:.4f} (step {run["kept_step"]}) / '
                     f'{run["validation_last"]:.4f} | {run["train_code_length"]:.4f} |')
    for coder, (bits, _) in results['classical'][kind].items():
      lines.append(f'| {coder} | {bits / code_bits:.4f} | | | | | |')
    lines.append('')
  for run in results['runs']:
    if run.get('neural_iterations'):
      lines += [f'**{run["label"]}**: bits per pixel of the original picture, per iteration', '',
                '| picture | iterations | PSNR dB | raw code bpp | coded bpp (.nec) |',
                '|---|---|---|---|---|']
      lines += [f'| {row["picture"]} | {row["iterations"]} | {row["psnr_db"]:.2f} | '
                f'{row["raw_bpp"]:.4f} | {row["coded_bpp"]:.4f} |'
                for row in run['neural_iterations']]
      lines.append('')
  return '\n'.join(lines)


def _figure(run, key):
  """A run's figure, or '-' for a JSON measured before the figure existed."""
  return f'{run[key]:.4f}' if key in run else '-'


def combined(paths):
  """Results JSONs -> one results dict: the first, with the runs (and any other kinds) of the
  others added."""
  loaded = []
  for path in paths:
    with open(path) as f:
      loaded.append(json.load(f))
  results = loaded[0]
  for other in loaded[1:]:
    for kind in other['classical']:
      results['classical'].setdefault(kind, other['classical'][kind])
      results['test_code_bits'].setdefault(kind, other['test_code_bits'][kind])
    for run in other['runs']:
      if other['steps'] != results['steps']:
        run['label'] += f' ({other["steps"]} steps)'
      results['runs'].append(run)
  return results


def plot(results, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  kinds = [kind for kind in (BP, SA, NEURAL) if kind in results['classical']]
  fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 5), squeeze=False)
  for ax, kind in zip(axes[0], kinds):
    code_bits = results['test_code_bits'][kind]
    names, real, theory = [], [], []
    for run in results['runs']:
      if run['kind'] == kind:
        names.append(run['label'])
        real.append(run['real_bits_per_bit'])
        theory.append(run['theory_bits_per_bit'])
    for coder, (bits, _) in results['classical'][kind].items():
      names.append(coder)
      real.append(bits / code_bits)
      theory.append(float('nan'))
    y = np.arange(len(names))
    colors = ['tab:blue' if i < len(names) - len(results['classical'][kind]) else 'tab:gray'
              for i in range(len(names))]
    ax.barh(y, real, color=colors)
    ax.plot(theory, y, 'k|', markersize=12, label='model theory')
    for yi, value in zip(y, real):
      ax.text(value, yi, f' {value:.3f}', va='center', fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('bits per code bit (unseen pictures, one file each)')
    ax.set_title(kind.replace('_', ' '))
    ax.legend(loc='lower right', fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  _log(f'plot: {path}')


def main():
  args = _parse()
  if args.from_json:
    results = combined(args.from_json)
  else:
    results = measure(args)
  print(table(results))
  if args.plot:
    plot(results, args.plot)


def measure(args):
  wanted = (QUICK_RUNS if args.quick and not args.runs else DEFAULT_RUNS if not args.runs
            else [run['label'] for run in RUNS] if args.runs == ['all'] else args.runs)
  runs = [run for run in RUNS if run['label'] in wanted]
  if len(runs) != len([label for label in wanted if not label.startswith('neural')]):
    raise SystemExit(f'unknown --runs; the runs are {[r["label"] for r in RUNS]}')
  steps = 20 if args.quick else args.steps
  eval_every = 10 if args.quick else args.eval_every
  wall = time.perf_counter()
  grays = pictures(args.quick)
  work_dir = tempfile.mkdtemp(prefix='bench_real_codes_')
  results = {'command': ' '.join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
             'verified_round_trip': args.verify,
             'split': {'train': TRAIN, 'validation': VALIDATION, 'test': TEST},
             'shapes': {name: list(gray.shape) for name, gray in grays.items()},
             'tiles': TILES, 'steps': steps, 'eval_every': eval_every, 'seed': args.seed,
             'augment': not args.no_augment, 'training_codes': {},
             'classical': {}, 'test_code_bits': {}, 'runs': []}
  if args.encoder:
    runs += [run for run in neural_runs(args.encoder) if not args.runs or run['label'] in args.runs
             or 'neural' in args.runs]
  for kind in (SA, BP, NEURAL):  # the cheaper kind first
    kind_runs = [run for run in runs if run['kind'] == kind]
    if not kind_runs:
      continue
    make = code_maker(kind, args.encoder)
    codes = codes_of(make, grays)
    results['test_code_bits'][kind] = int(sum(codes[name].size for name in TEST))
    start = time.perf_counter()
    results['classical'][kind] = classical(kind, grays, codes)
    _log(f'{kind}: classical coders in {time.perf_counter() - start:.1f} s')
    files = (None if args.models else
             training_files(kind, make, grays, codes, work_dir, augment=not args.no_augment))
    results['training_codes'][kind] = files[2] if files else None
    for run in kind_runs:
      outcome = train_and_compress(run, codes, files, steps, eval_every, args.seed, work_dir,
                                   args.verify, grays, args.encoder, args.keep_models,
                                   args.models)
      _log(f'{run["label"]}: real {outcome["real_bits_per_bit"]:.4f}, theory '
           f'{outcome["theory_bits_per_bit"]:.4f} bits/bit (train {outcome["train_seconds"]:.0f} s)')
      results['runs'].append(outcome)
      results['wall_seconds'] = time.perf_counter() - wall
      _save(results, args.out)  # after every run: a long run's finished part survives
  results['wall_seconds'] = time.perf_counter() - wall
  _save(results, args.out)
  return results


def _save(results, path):
  if path:
    with open(path + '.tmp', 'w') as f:
      json.dump(results, f, indent=1, default=str)
    os.replace(path + '.tmp', path)


if __name__ == '__main__':
  main()
