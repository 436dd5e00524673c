"""Training benchmark: held-out code length against wall-clock training time, with exact floors.

What one run does (all in this process, so the numbers belong together):
1. generates a training set (`--train-count` synthetic codes of `--shape`, seed `--train-seed`)
   and `--heldout` held-out codes (another seed) and writes both as GZIP TFRecords of our
   Examples, i.e. the same input the TFX Trainer reads;
2. computes, on the same held-out codes, the two floors of `entropy_coder.data_gen.floors`:
   the source entropy (every earlier bit seen) and the visibility floor of the progressive
   model for the configured layer_depth (the other bits of a pixel's layer hidden);
3. trains `entropy_coder.trainer.train_loop.Trainer` for a wall-clock budget, one step at a
   time through `Trainer.train_step`, and evaluates the held-out code length every
   `--eval-every-minutes` of *training* time. Evaluation time is excluded from the training
   clock (it is reported separately); the first step's tracing time is included.

Why not `Trainer.fit`: it stops at a step count, and calling it in chunks would restart its
seeded shuffle (the same first samples every chunk). The loop here is fit's, minus logging.

Writes `--out` (JSON: config, floors, curve, throughput) and, with `--plot`, a PNG curve with
the floors as horizontal lines. `--combine a.json b.json --plot x.png` only plots saved runs.

`--throughput` measures training speed instead, side by side in one process (`throughput`):
each `--variants` entry (forward path, batch size, optional XLA) gets its own Trainer and
reader of the same TFRecords; after a warm-up, `--rounds` rounds time `--round-seconds` of
steps of every variant in turn, so the machine's load falls on all of them alike. It reports
the median samples/s, samples per CPU-second and the ratio to the first variant (the baseline:
today's tf.scan path at the original's batch 4) and to the original 2017 code's 64 samples/s.

    .venv/bin/python bench/bench_train.py --throughput --out /tmp/throughput.json

    .venv/bin/python bench/bench_train.py --minutes 30 --train-config configs/synthetic_tuned/train_config.json \
        --out /tmp/tuned.json --plot docs/images/train_tuned.png
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# docs/ORIGINAL.md §10: the original, synthetic configs (batch 4), idle machine, 64 samples/s.
ORIGINAL_CURVE = ((0.0, 1.007), (10.0, 0.806), (20.0, 0.794), (30.0, 0.7875))
ORIGINAL_SAMPLES_PER_SECOND = 64.0
# --throughput's default variants: path (scan = the tf.scan recurrences, the path before
# trainer/static_forward.py; static = that module), batch size, and ':xla' for jit_compile.
THROUGHPUT_VARIANTS = 'scan:4,static:4,static:8,static:16,static:32'


def _parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--minutes', type=float, default=10.0, help='training wall-clock budget')
  parser.add_argument('--model-config', default=os.path.join(REPO, 'configs/synthetic/model_config.json'))
  parser.add_argument('--train-config', default=os.path.join(REPO, 'configs/synthetic/train_config.json'))
  parser.add_argument('--channel-causal', action='store_true', help='override: channel_causal true')
  parser.add_argument('--layer-depth', type=int, help='override model layer_depth')
  parser.add_argument('--layer-count', type=int, help='override model layer_count')
  parser.add_argument('--batch-size', type=int, help='override train batch_size')
  parser.add_argument('--learning-rate', type=float, help='override train learning_rate')
  parser.add_argument('--adam-epsilon', type=float, help='override train adam_epsilon')
  parser.add_argument('--shape', default='35,48,8', help='code shape H,W,D')
  parser.add_argument('--train-count', type=int, default=20000)
  parser.add_argument('--train-seed', type=int, default=1)
  parser.add_argument('--heldout', type=int, default=300)
  parser.add_argument('--heldout-seed', type=int, default=2)
  parser.add_argument('--seed', type=int, default=0, help='model init and shuffle seed')
  parser.add_argument('--eval-every-minutes', type=float, default=2.0)
  parser.add_argument('--eval-batch', type=int, default=50)
  parser.add_argument('--threads', type=int, default=0, help='TF intra/inter-op threads (0: TF default)')
  parser.add_argument('--data-dir', help='where the TFRecords go (reused if present); default a temp dir')
  parser.add_argument('--label', default='', help='name of the run in tables and plots')
  parser.add_argument('--out', help='results JSON')
  parser.add_argument('--plot', help='PNG curve')
  parser.add_argument('--combine', nargs='+', help='plot these results JSONs together (no training)')
  parser.add_argument('--throughput', action='store_true',
                      help='measure training samples/s of --variants side by side (no curve)')
  parser.add_argument('--variants', default=THROUGHPUT_VARIANTS,
                      help='comma-separated path:batch[:xla], path scan or static; the first is '
                      'the baseline')
  parser.add_argument('--rounds', type=int, default=3, help='--throughput: timed rounds')
  parser.add_argument('--round-seconds', type=float, default=20.0,
                      help='--throughput: seconds of steps per variant per round')
  parser.add_argument('--original-curve', action='store_true',
                      help='also plot the original\'s published curve (docs/ORIGINAL.md §10)')
  return parser.parse_args()


def _log(line):
  print(f'[{time.strftime("%H:%M:%S")}] {line}', file=sys.stderr, flush=True)


def _configs(args):
  from entropy_coder.trainer import config as config_lib  # pylint: disable=g-import-not-at-top
  model = config_lib.load_model_config(args.model_config).to_dict()
  train = config_lib.load_train_config(args.train_config).to_dict()
  if args.channel_causal:
    model['channel_causal'] = True
  for key, value in (('layer_depth', args.layer_depth), ('layer_count', args.layer_count)):
    if value is not None:
      model[key] = value
  for key, value in (('batch_size', args.batch_size), ('learning_rate', args.learning_rate),
                     ('adam_epsilon', args.adam_epsilon)):
    if value is not None:
      train[key] = value
  return config_lib.model_config_from_dict(model), config_lib.train_config_from_dict(train)


def _write_data(args, shape, data_dir):
  """(train file, held-out file, held-out codes); files are reused when already written."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import synthetic  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tag = 'x'.join(map(str, shape))
  paths = {}
  heldout = synthetic.generate_codes(args.heldout_seed, 0, args.heldout, shape)
  for name, seed, count in (('train', args.train_seed, args.train_count),
                            ('heldout', args.heldout_seed, args.heldout)):
    path = os.path.join(data_dir, f'{name}_{tag}_seed{seed}_n{count}.tfrecord.gz')
    paths[name] = path
    if os.path.exists(path):
      continue
    start = time.perf_counter()
    tmp = path + f'.tmp{os.getpid()}'
    with tf.io.TFRecordWriter(tmp, options='GZIP') as writer:
      for first in range(0, count, 1000):
        for code in synthetic.generate_codes(seed, first, min(1000, count - first), shape):
          writer.write(codes_format.encode_example(code))
    os.replace(tmp, path)
    _log(f'wrote {count} {name} codes {tag} (seed {seed}) in {time.perf_counter() - start:.1f} s: {path}')
  return paths['train'], paths['heldout'], heldout


def _floors(codes, layer_depth):
  from entropy_coder.data_gen import floors  # pylint: disable=g-import-not-at-top
  return {
      'source_entropy_heldout': floors.code_length(
          codes, floors.ideal_probabilities(codes, layer_depth, channel_causal=True)),
      'visibility_floor_heldout': floors.code_length(
          codes, floors.ideal_probabilities(codes, layer_depth, channel_causal=False)),
      'binary_entropy_0.2': floors.binary_entropy(0.2),
  }


def _setup(args):
  """TF's threads, the code shape, the checked configs and the data files of a run:
  -> (shape, model_config, train_config, (train file, held-out file, held-out codes))."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  shape = tuple(int(s) for s in args.shape.split(','))
  model_config, train_config = _configs(args)
  model_config.coded_depth(shape[-1], '--shape')
  data_dir = args.data_dir or tempfile.mkdtemp(prefix='bench_train_data_')
  os.makedirs(data_dir, exist_ok=True)
  return shape, model_config, train_config, _write_data(args, shape, data_dir)


def train(args):
  from entropy_coder.trainer import data, model as model_lib  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer.train_loop import Trainer  # pylint: disable=g-import-not-at-top

  shape, model_config, train_config, (train_file, heldout_file, heldout) = _setup(args)
  floors = _floors(heldout, model_config.layer_depth)
  _log(f'floors on the held-out codes: source entropy {floors["source_entropy_heldout"]:.4f}, '
       f'visibility (layer_depth {model_config.layer_depth}) {floors["visibility_floor_heldout"]:.4f}')

  train_dir = tempfile.mkdtemp(prefix='bench_train_run_')
  trainer = Trainer(model_config, train_config, train_dir, seed=args.seed)
  dataset, _ = data.code_dataset(train_file, train_config.batch_size, shuffle_seed=args.seed,
                                 repeat=True, drop_remainder=True)
  batches = iter(dataset)
  budget = 60.0 * args.minutes
  eval_interval = 60.0 * args.eval_every_minutes
  curve, eval_seconds, eval_cpu = [], 0.0, [0.0]
  cpu_start = time.process_time()

  def evaluate(train_seconds, steps, train_loss):
    nonlocal eval_seconds
    start = time.perf_counter()
    train_cpu = time.process_time() - cpu_start - eval_cpu[0]
    cpu_before = time.process_time()
    length, per_layer = trainer.evaluate(heldout_file, batch_size=args.eval_batch)
    eval_seconds += time.perf_counter() - start
    eval_cpu[0] += time.process_time() - cpu_before
    curve.append({'train_minutes': train_seconds / 60.0, 'train_cpu_minutes': train_cpu / 60.0,
                  'steps': steps,
                  'samples': steps * train_config.batch_size, 'heldout_bits_per_bit': length,
                  'per_layer': per_layer, 'train_loss_window': train_loss,
                  'wall_minutes': (time.perf_counter() - wall_start) / 60.0})
    _log(f'{args.label or "run"}: {train_seconds / 60:.2f} min, step {steps}: held-out '
         f'{length:.4f} bits/bit (train window {train_loss:.4f})')

  wall_start = time.perf_counter()
  evaluate(0.0, 0, float('nan'))
  train_seconds, steps, next_eval = 0.0, 0, eval_interval
  window_loss, window_steps, first_step_seconds = 0.0, 0, None
  while train_seconds < budget:
    start = time.perf_counter()
    loss = float(trainer.train_step(next(batches)))
    elapsed = time.perf_counter() - start
    train_seconds += elapsed
    steps += 1
    if first_step_seconds is None:
      first_step_seconds = elapsed
    window_loss, window_steps = window_loss + loss, window_steps + 1
    if not np.isfinite(loss):
      _log(f'loss is {loss} at step {steps}: stopping')
      break
    if train_seconds >= next_eval or train_seconds >= budget:
      evaluate(train_seconds, steps, window_loss / window_steps)
      window_loss, window_steps = 0.0, 0
      next_eval += eval_interval
  cpu_seconds = time.process_time() - cpu_start
  steady = (steps - 1) * train_config.batch_size / max(train_seconds - first_step_seconds, 1e-9)
  result = {
      'label': args.label,
      'command': ' '.join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
      'model_config': model_config.to_dict(),
      'train_config': train_config.to_dict(),
      'parameters': model_lib.parameter_count(model_config),
      'shape': list(shape), 'train_count': args.train_count, 'train_seed': args.train_seed,
      'heldout': args.heldout, 'heldout_seed': args.heldout_seed, 'seed': args.seed,
      'threads': args.threads,
      'floors': floors,
      'curve': curve,
      'train_seconds': train_seconds, 'steps': steps, 'samples': steps * train_config.batch_size,
      'first_step_seconds': first_step_seconds,
      'samples_per_second': steady,
      'eval_seconds_total': eval_seconds,
      'process_cpu_seconds': cpu_seconds,
      'train_cpu_seconds': cpu_seconds - eval_cpu[0],
      # Samples per CPU-second of training: what one dedicated core would do, on a busy machine.
      'samples_per_cpu_second': steps * train_config.batch_size / max(cpu_seconds - eval_cpu[0], 1e-9),
      'wall_seconds': time.perf_counter() - wall_start,
      'load_average_end': os.getloadavg(),
      'finished_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
  }
  _log(f'done: {steps} steps ({result["samples"]} samples) in {train_seconds / 60:.1f} min of '
       f'training, {steady:.1f} samples/s after the first step ({first_step_seconds:.1f} s), '
       f'{result["samples_per_cpu_second"]:.1f} samples per CPU-second, '
       f'eval {eval_seconds:.0f} s excluded; final held-out {curve[-1]["heldout_bits_per_bit"]:.4f}')
  return result


def _variant(text):
  """'static:16' / 'scan:4:xla' -> (path, batch, xla); UserError for anything else."""
  from entropy_coder.errors import UserError  # pylint: disable=g-import-not-at-top
  parts = text.strip().split(':')
  if (len(parts) not in (2, 3) or parts[0] not in ('scan', 'static') or not parts[1].isdigit()
      or int(parts[1]) < 1 or parts[2:] not in ([], ['xla'])):
    raise UserError(f'--variants: {text!r} is not path:batch[:xla] (path scan or static)')
  return parts[0], int(parts[1]), parts[2:] == ['xla']


def throughput(args):
  """Training samples/s of every --variants entry, interleaved in rounds (module docstring)."""
  from entropy_coder.trainer import config as config_lib  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import data  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer.train_loop import Trainer  # pylint: disable=g-import-not-at-top

  variants = [_variant(text) for text in args.variants.split(',')]
  shape, model_config, train_config, (train_file, _, _) = _setup(args)
  runs = []
  for path, batch, xla in variants:
    config = config_lib.train_config_from_dict(dict(train_config.to_dict(), batch_size=batch))
    trainer = Trainer(model_config, config, tempfile.mkdtemp(prefix='bench_throughput_'),
                      seed=args.seed, xla=xla)
    trainer.model.unrolled = path == 'static'
    dataset, _ = data.code_dataset(train_file, batch, shuffle_seed=args.seed, repeat=True,
                                   drop_remainder=True)
    batches = iter(dataset.prefetch(2))
    start = time.perf_counter()
    float(trainer.train_step(next(batches)))
    first = time.perf_counter() - start
    for _ in range(3):
      float(trainer.train_step(next(batches)))
    label = f'{path} batch {batch}' + (' xla' if xla else '')
    _log(f'{label}: first step (tracing{" and XLA compile" if xla else ""}) {first:.1f} s')
    runs.append({'label': label, 'path': path, 'batch_size': batch, 'xla': xla,
                 'first_step_seconds': first, 'rounds': [], '_step': (trainer, batches)})
  for index in range(args.rounds):
    for run in runs:
      trainer, batches = run['_step']
      steps, wall_start, cpu_start = 0, time.perf_counter(), time.process_time()
      while time.perf_counter() - wall_start < args.round_seconds:
        float(trainer.train_step(next(batches)))
        steps += 1
      wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
      samples = steps * run['batch_size']
      run['rounds'].append({'samples_per_second': samples / wall,
                            'samples_per_cpu_second': samples / cpu,
                            'load_average': os.getloadavg()[0]})
    baseline = runs[0]['rounds'][-1]
    _log(f'round {index + 1}: ' + ', '.join(
        f'{run["label"]} {run["rounds"][-1]["samples_per_second"]:.0f}/s '
        f'(x{run["rounds"][-1]["samples_per_second"] / baseline["samples_per_second"]:.2f})'
        for run in runs))
  for run in runs:
    del run['_step']
    for key in ('samples_per_second', 'samples_per_cpu_second'):
      run[key] = float(np.median([r[key] for r in run['rounds']]))
    # per round against the baseline's same round, then the median: load changes between rounds
    run['ratio_to_baseline'] = float(np.median([
        r['samples_per_second'] / b['samples_per_second']
        for r, b in zip(run['rounds'], runs[0]['rounds'])]))
    run['cpu_ratio_to_baseline'] = float(np.median([
        r['samples_per_cpu_second'] / b['samples_per_cpu_second']
        for r, b in zip(run['rounds'], runs[0]['rounds'])]))
    run['ratio_to_original'] = run['samples_per_second'] / ORIGINAL_SAMPLES_PER_SECOND
  return {'command': ' '.join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
          'model_config': model_config.to_dict(), 'train_config': train_config.to_dict(),
          'shape': list(shape), 'cpu_count': os.cpu_count(), 'variants': runs,
          'original_samples_per_second': ORIGINAL_SAMPLES_PER_SECOND,
          'finished_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}


def throughput_table(result):
  lines = ['| variant | first step s | samples/s (median) | x baseline | samples per CPU-s | '
           'x baseline (CPU) | x original 64/s | load avg |',
           '|---|---:|---:|---:|---:|---:|---:|---:|']
  for run in result['variants']:
    loads = [r['load_average'] for r in run['rounds']]
    lines.append(f'| {run["label"]} | {run["first_step_seconds"]:.1f} | '
                 f'{run["samples_per_second"]:.1f} | {run["ratio_to_baseline"]:.2f} | '
                 f'{run["samples_per_cpu_second"]:.1f} | {run["cpu_ratio_to_baseline"]:.2f} | '
                 f'{run["ratio_to_original"]:.2f} | {min(loads):.1f}-{max(loads):.1f} |')
  return '\n'.join(lines)


def plot(results, path, original_curve=False):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(8, 5))
  floor_styles = {}
  for result in results:
    points = result['curve']
    label = result['label'] or os.path.basename(result.get('command', 'run'))
    line, = ax.plot([p['train_minutes'] for p in points],
                    [p['heldout_bits_per_bit'] for p in points], marker='o', ms=3, label=label)
    depth = result['model_config']['layer_depth']
    floors = result['floors']
    for name, value, style in (('visibility floor, layer_depth %d' % depth,
                                floors['visibility_floor_heldout'], '--'),
                               ('source entropy', floors['source_entropy_heldout'], ':')):
      if name not in floor_styles:
        floor_styles[name] = value
        ax.axhline(value, color='gray' if style == ':' else 'black', ls=style, lw=1,
                   label=f'{name}: {value:.4f}')
  if original_curve:
    ax.plot(*zip(*ORIGINAL_CURVE), color='red', marker='s', ls='-.', lw=1,
            label='original 2017 code (idle machine, 64 samples/s)')
  lows = [min(p['heldout_bits_per_bit'] for p in r['curve'][1:] or r['curve']) for r in results]
  low = min(lows + list(floor_styles.values()))
  ax.set_ylim(low - 0.01, max(0.9, low + 0.05))
  ax.set_xlabel('training wall-clock minutes (evaluation excluded)')
  ax.set_ylabel('held-out code length, bits/bit')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  _log(f'plot: {path}')


def markdown_table(result):
  lines = ['| train min | steps | samples | held-out bits/bit |', '|---:|---:|---:|---:|']
  for p in result['curve']:
    lines.append(f'| {p["train_minutes"]:.1f} | {p["steps"]} | {p["samples"]} | '
                 f'{p["heldout_bits_per_bit"]:.4f} |')
  return '\n'.join(lines)


def main():
  from entropy_coder.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    _main(_parse())
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def _main(args):
  if args.combine:
    results = []
    for path in args.combine:
      with open(path, encoding='utf-8') as f:
        results.append(json.load(f))
    if args.plot:
      plot(results, args.plot, args.original_curve)
    return
  if args.throughput:
    result = throughput(args)
    print(throughput_table(result))
    if args.out:
      with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1)
    return
  result = train(args)
  print(markdown_table(result))
  if args.out:
    with open(args.out, 'w', encoding='utf-8') as f:
      json.dump(result, f, indent=1)
  if args.plot:
    plot([result], args.plot, args.original_curve)


if __name__ == '__main__':
  main()
