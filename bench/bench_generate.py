"""Benchmark of the synthetic source: ours against the original's per-bit loop, in the same run.

Measures, on one core unless said otherwise:
1. the baseline: the original `synthetic_model.GenerateSingleCode` rewritten here (one
   `np.random.rand()` per bit, 13 checks per bit in pure Python; only `np.int` -> `int`);
2. ours: `generate_codes` (bit-parallel numba kernel), and the same plus tf.Example encoding;
3. the numba JIT compile time (empty cache) and the cached load time, in fresh processes;
4. the wall time of `entropy-coder generate --count N` (35x48x8, GZIP TFRecords written) with 1 and
   2 workers, and of the same command with `--count 1`, i.e. Python + Beam start-up and tear-down.

Prints a Markdown table for docs/BENCHMARKS.md. Timings are the best of `--repeats` runs.

    .venv/bin/python bench/bench_generate.py            # full run, about 2-3 minutes
    .venv/bin/python bench/bench_generate.py --quick    # no CLI runs
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from entropy_coder.data_gen import example_wire
from entropy_coder.data_gen import synthetic

SHAPE = synthetic.DATASET_SHAPE
_BIN = os.path.dirname(sys.executable)

# --- The original's generator (research/compression/entropy_coder/dataset/synthetic_model.py) ---
_CRC_LINE = [[0, 1, 0], [1, 1, 0], [1, 0, 0]]
_CRC_DEPTH = [1, 1, 0, 1]


def _line_crc(code, width, y, x, d):
  crc = 0
  for dy in range(len(_CRC_LINE)):
    i = y - 1 - dy
    if i < 0:
      continue
    for dx in range(len(_CRC_LINE[dy])):
      j = x - 2 + dx
      if j < 0 or j >= width:
        continue
      crc += 1 if (code[i, j, d] != _CRC_LINE[dy][dx]) else 0
  return crc


def _depth_crc(code, y, x, d):
  crc = 0
  for delta in range(len(_CRC_DEPTH)):
    k = d - 1 - delta
    if k < 0:
      continue
    crc += 1 if (code[y, x, k] != _CRC_DEPTH[delta]) else 0
  return crc


def original_generate_single_code(code_shape):
  code = np.zeros(code_shape, dtype=int)
  height, width, depth = code_shape
  for d in range(depth):
    for y in range(height):
      for x in range(width):
        v1 = _line_crc(code, width, y, x, d)
        v2 = _depth_crc(code, y, x, d)
        v = 1 if (v1 + v2 >= 6) else 0
        code[y, x, d] = v if np.random.rand() < 0.8 else 1 - v
  return code


# --- Measurements ---

def best_rate(fn, count, repeats):
  """Best samples/s of `fn()` (which makes `count` samples) over `repeats` runs."""
  best = float('inf')
  for _ in range(repeats):
    started = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - started)
  return count / best


def jit_times():
  """(compile s, cached load s) of the first generate_codes call in a fresh process."""
  code = ('import time; from entropy_coder.data_gen import synthetic as s; t = time.perf_counter(); '
          's.generate_codes(0, 0, 1); print(time.perf_counter() - t)')
  with tempfile.TemporaryDirectory() as cache:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    cold = float(subprocess.run([sys.executable, '-c', code], env=env, check=True,
                                capture_output=True, text=True).stdout)
    warm = float(subprocess.run([sys.executable, '-c', code], env=env, check=True,
                                capture_output=True, text=True).stdout)
  return cold, warm


def cli_wall(count, workers, repeats):
  best = float('inf')
  for _ in range(repeats):
    with tempfile.TemporaryDirectory() as tmp:
      command = [os.path.join(_BIN, 'entropy-coder'), 'generate', '--output-dir',
                 os.path.join(tmp, 'data'), '--count', str(count), '--num-workers', str(workers)]
      started = time.perf_counter()
      subprocess.run(command, check=True, capture_output=True)
      best = min(best, time.perf_counter() - started)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--baseline-samples', type=int, default=8)
  parser.add_argument('--samples', type=int, default=20000)
  parser.add_argument('--count', type=int, default=20000, help='samples for the CLI runs')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--quick', action='store_true', help='skip the CLI runs')
  args = parser.parse_args()

  np.random.seed(0)
  baseline = best_rate(lambda: [original_generate_single_code(SHAPE)
                                for _ in range(args.baseline_samples)],
                       args.baseline_samples, max(1, args.repeats - 1))
  synthetic.generate_codes(0, 0, 64)  # load the compiled kernel
  ours = best_rate(lambda: synthetic.generate_codes(1, 0, args.samples), args.samples,
                   args.repeats)

  def generate_and_encode():
    for start in range(0, args.samples, 1024):
      codes = synthetic.generate_codes(1, start, min(1024, args.samples - start))
      example_wire.encode_batch(codes, range(start, start + len(codes)))

  encoded = best_rate(generate_and_encode, args.samples, args.repeats)
  cold, warm = jit_times()

  print(f'machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end')
  print('| measurement (35x48x8 samples) | value |')
  print('|---|---|')
  print(f'| original per-bit loop, 1 core | {baseline:.1f} samples/s |')
  print(f'| ours, generate_codes, 1 core | {ours:,.0f} samples/s ({1e6 / ours:.1f} us/sample) |')
  print(f'| **ratio ours / original, per core** | **{ours / baseline:,.0f}x** |')
  print(f'| ours + tf.Example encoding, 1 core | {encoded:,.0f} samples/s '
        f'({encoded / baseline:,.0f}x) |')
  print(f'| numba JIT compile (empty cache) / cached load | {cold:.2f} s / {warm:.2f} s |')
  if not args.quick:
    startup = cli_wall(1, 1, args.repeats)
    walls = {workers: cli_wall(args.count, workers, args.repeats) for workers in (1, 2)}
    startup2 = cli_wall(1, 2, args.repeats)
    for workers, wall in walls.items():
      base = startup if workers == 1 else startup2
      print(f'| `entropy-coder generate --count {args.count} --num-workers {workers}` wall | '
            f'{wall:.1f} s (start-up {base:.1f} s + {wall - base:.1f} s of work) |')


if __name__ == '__main__':
  main()
