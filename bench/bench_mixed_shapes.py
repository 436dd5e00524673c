"""Training throughput on codes of mixed H x W against uniform codes of the same total size.

Issue 12 §1: a dataset of one code per image, every image a different size, must train within
25 % of the throughput (code bits per second) of a uniform dataset holding the same number of
code bits. One run builds both datasets (synthetic codes, GZIP TFRecords of our Examples, as
the Trainer reads them):

* mixed: `--mixed-count` codes whose H and W are drawn (seeded) from `--min-side`..`--max-side`,
  so most are larger than the crop and some are smaller in one dimension;
* uniform: codes of `--crop` x `--crop`, as many as give the same total code bits.

Both train through `train_loop.training_dataset` (the Trainer's input: the uniform set as whole
codes, the mixed one as per-epoch tilings) and `Trainer.train_step`. After `--warmup` steps
(tracing: one trace per tile shape) each is timed for `--steps` steps, alternating uniform and
mixed `--repeats` times so that load on a shared machine hits both alike; the medians and
their ratio are printed as JSON.

    .venv/bin/python bench/bench_mixed_shapes.py
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--layer-depth', type=int, default=2)
  parser.add_argument('--layer-count', type=int, default=4)
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--crop', type=int, default=32, help='training tile side')
  parser.add_argument('--mixed-count', type=int, default=60)
  parser.add_argument('--min-side', type=int, default=20)
  parser.add_argument('--max-side', type=int, default=120)
  parser.add_argument('--warmup', type=int, default=60, help='untimed steps first (tracing)')
  parser.add_argument('--steps', type=int, default=60, help='timed steps per repeat')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--seed', type=int, default=0)
  return parser.parse_args()


def _log(line):
  print(line, file=sys.stderr, flush=True)


def _datasets(args, root):
  """Writes the mixed and the uniform TFRecord file; -> ({name: path}, {name: code bits})."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import tfrecord_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen.synthetic import generate_codes  # pylint: disable=g-import-not-at-top
  depth = args.layer_depth * args.layer_count
  rng = np.random.default_rng(args.seed)
  sides = rng.integers(args.min_side, args.max_side + 1, size=(args.mixed_count, 2))
  mixed = [generate_codes(args.seed + 1, [i], shape=(int(h), int(w), depth))[0]
           for i, (h, w) in enumerate(sides)]
  bits = sum(code.size for code in mixed)
  count = int(round(bits / (args.crop * args.crop * depth)))
  uniform = generate_codes(args.seed + 2, 0, count, shape=(args.crop, args.crop, depth))
  paths = {'mixed': os.path.join(root, 'mixed.gz'), 'uniform': os.path.join(root, 'uniform.gz')}
  for name, codes in (('mixed', mixed), ('uniform', uniform)):
    tfrecord_files.write_gzip_tfrecords(paths[name], map(codes_format.encode_example, codes))
  return paths, {'mixed': bits, 'uniform': int(uniform.size)}, len({c.shape for c in mixed})


def _timed(trainer, batches, steps):
  """Code bits per second over `steps` train steps."""
  bits, start = 0, time.perf_counter()
  for _ in range(steps):
    batch = next(batches)
    trainer.train_step(batch).numpy()
    bits += int(np.prod(batch.shape))
  return bits / (time.perf_counter() - start)


def main():
  args = _parse()
  from entropy_coder.trainer import train_loop  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer.config import ModelConfig, TrainConfig  # pylint: disable=g-import-not-at-top
  model_config = ModelConfig(layer_depth=args.layer_depth, layer_count=args.layer_count)
  train_config = TrainConfig(batch_size=args.batch_size, learning_rate=0.01, decay_rate=0.9,
                             samples_per_decay=100000, crop=args.crop)
  root = tempfile.mkdtemp(prefix='bench_mixed_')
  paths, bits, mixed_shapes = _datasets(args, root)
  _log(f'code bits: {bits}; mixed shapes: {mixed_shapes}')
  runs = {}
  for name, path in paths.items():
    trainer = train_loop.Trainer(model_config, train_config, os.path.join(root, name),
                                 seed=args.seed)
    dataset, described = train_loop.training_dataset(path, train_config, args.seed)
    batches = iter(dataset)
    start = time.perf_counter()
    _timed(trainer, batches, args.warmup)
    _log(f'{name}: {described}; warm-up {args.warmup} steps in {time.perf_counter() - start:.1f} s')
    runs[name] = (trainer, batches, [])
  for repeat in range(args.repeats):
    for name, (trainer, batches, rates) in runs.items():
      rates.append(_timed(trainer, batches, args.steps))
      _log(f'repeat {repeat}: {name} {rates[-1] / 1e3:.1f} kbit/s')
  medians = {name: statistics.median(rates) for name, (_, _, rates) in runs.items()}
  traces = {name: trainer._train_step.experimental_get_tracing_count()  # pylint: disable=protected-access
            for name, (trainer, _, _) in runs.items()}
  print(json.dumps({
      'config': vars(args), 'code_bits': bits, 'mixed_shapes': mixed_shapes,
      'train_step_traces': traces,
      'code_bits_per_second': {name: rates for name, (_, _, rates) in runs.items()},
      'median_code_bits_per_second': medians,
      'mixed_over_uniform': medians['mixed'] / medians['uniform'],
  }, indent=2))


if __name__ == '__main__':
  main()
