"""Benchmark of the real codec: incremental engine vs the naive decoder, size vs theory and vs
classical coders, in one run.

On synthetic 35x48x8 codes (`generate_codes`) with the reference weights of the original
(../shared/reference, synthetic config layer_depth 2, layer_count 8):
1. encode and decode samples/s of `codec.compress` / `codec.decompress` (wall time with
   `--threads`, and CPU time per sample with 1 thread), checking the round trip;
2. the naive decoder (`codec.naive`: one whole full forward per pixel step) on a batch of
   `--naive-samples` codes for `--naive-steps` pixel steps, extrapolated linearly to a whole
   code (every step costs the same full forward); its prefix is checked against the input;
3. real size (file and payload) against the theoretical code length, and zstd -19 / xz -9 on
   the same packed codes (np.packbits, 1 bit per bit).

Prints a Markdown table for docs/BENCHMARKS.md (and `--json` for machines).

    .venv/bin/python bench/bench_codec.py                 # 512 codes, about 1 minute
    .venv/bin/python bench/bench_codec.py --samples 128   # quicker
"""
import argparse
import json
import lzma
import os
import sys
import tempfile
import time

import numpy as np
import zstandard

from entropy_coder import codec, model_files
from entropy_coder.codec import naive, network
from entropy_coder.data_gen import synthetic

REFERENCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                          'shared', 'reference', 'weights_step25284.npz'))


def _parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--samples', type=int, default=512)
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--repeats', type=int, default=2, help='best of this many timed runs')
  parser.add_argument('--naive-samples', type=int, default=4)
  parser.add_argument('--naive-steps', type=int, default=12)
  parser.add_argument('--weights', default=REFERENCE)
  parser.add_argument('--seed', type=int, default=2017)
  parser.add_argument('--json', help='also write the results to this JSON file')
  parser.add_argument('--profile', action='store_true',
                      help='also print where the decoder spends its CPU time (1 thread, cProfile)')
  return parser.parse_args()


def _best(fn, repeats, clock=time.perf_counter):
  best, result = float('inf'), None
  for _ in range(repeats):
    start = clock()
    result = fn()
    best = min(best, clock() - start)
  return best, result


def main():
  args = _parse()
  with tempfile.TemporaryDirectory() as model_dir:
    weights = dict(np.load(args.weights, allow_pickle=False))
    model_files.write_model_files(model_dir, weights, {'layer_depth': 2, 'layer_count': 8})
    files = model_files.read_model_files(model_dir)
  net = network.build_network(files)
  codes = list(synthetic.generate_codes(args.seed, 0, args.samples))
  n = len(codes)
  bits = sum(code.size for code in codes)

  codec.decompress(codec.compress(codes[:2], files), files)  # load the numba cache / compile
  enc_s, (data, stats) = _best(lambda: codec.compress_with_stats(codes, files, threads=args.threads),
                               args.repeats)
  dec_s, restored = _best(lambda: codec.decompress(data, files, threads=args.threads), args.repeats)
  assert all(np.array_equal(a, b) for a, b in zip(restored, codes)), 'round trip failed'
  sub = codes[:min(n, 256)]
  sub_data = codec.compress(sub, files, threads=1)
  enc_cpu, _ = _best(lambda: codec.compress(sub, files, threads=1), args.repeats, time.process_time)
  dec_cpu, _ = _best(lambda: codec.decompress(sub_data, files, threads=1), args.repeats,
                     time.process_time)

  batch = np.stack(codes[:args.naive_samples])
  naive_data = naive.naive_encode(net, batch)
  naive_s, partial = _best(lambda: naive.naive_decode(net, naive_data, batch.shape,
                                                      max_steps=args.naive_steps), 1)
  steps_per_code = batch.shape[1] * batch.shape[2] * (batch.shape[3] // net.layer_depth)
  height, width = batch.shape[1:3]
  for step in range(args.naive_steps):
    k, rest = divmod(step, height * width)
    y, x = divmod(rest, width)
    assert np.array_equal(partial[:, y, x, 2 * k:2 * k + 2], batch[:, y, x, 2 * k:2 * k + 2])
  naive_per_code = naive_s / args.naive_steps * steps_per_code / len(batch)

  packed = b''.join(np.packbits(code.reshape(-1)).tobytes() for code in codes)
  zstd_bytes = len(zstandard.ZstdCompressor(level=19).compress(packed))
  xz_bytes = len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME))

  results = {
      'samples': n, 'shape': list(codes[0].shape), 'threads': args.threads, 'code_bits': bits,
      'encode_samples_per_s': n / enc_s, 'decode_samples_per_s': n / dec_s,
      'encode_cpu_ms_per_sample_1_thread': 1e3 * enc_cpu / len(sub),
      'decode_cpu_ms_per_sample_1_thread': 1e3 * dec_cpu / len(sub),
      'naive_decode_s_per_sample': naive_per_code,
      'naive_decode_samples_per_s': 1.0 / naive_per_code,
      'decode_speedup_vs_naive': naive_per_code / (dec_s / n),
      'decode_speedup_vs_naive_1_thread_cpu': naive_per_code / (dec_cpu / len(sub)),
      'theory_bits_per_bit': stats.theoretical_bits_per_bit,
      'payload_bits_per_bit': stats.payload_bits_per_bit,
      'file_bits_per_bit': stats.bits_per_bit,
      'payload_gap_percent': 100 * stats.gap,
      'file_gap_percent': 100 * (8 * stats.file_bytes / stats.theoretical_bits - 1),
      'zstd19_bits_per_bit': 8 * zstd_bytes / bits,
      'xz9e_bits_per_bit': 8 * xz_bytes / bits,
      'load_average_1min': os.getloadavg()[0],
  }
  print(_table(results))
  if args.profile:
    print(_profile(lambda: codec.decompress(sub_data, files, threads=1), len(sub)))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


def _profile(fn, samples):
  """CPU time per sample of the decoder's parts, from cProfile with a CPU-time clock."""
  import cProfile  # pylint: disable=g-import-not-at-top
  import pstats  # pylint: disable=g-import-not-at-top
  profile = cProfile.Profile(time.process_time)
  profile.runcall(fn)
  stats = pstats.Stats(profile).stats
  rows, whole = [], 0.0
  for (path, _, name), (_, calls, own, cumulative, _) in stats.items():
    whole = max(whole, cumulative)
    if own / samples > 20e-6:
      rows.append((own, calls, f'{os.path.basename(path)}:{name}' if path != '~' else name))
  lines = ['', f'Decoder CPU time by function (own time, 1 thread, {samples} codes; total '
           f'{1e3 * whole / samples:.2f} ms/code incl. profiler overhead):', '',
           '| function | calls | ms per code | share |', '|---|---|---|---|']
  for own, calls, name in sorted(rows, reverse=True):
    lines.append(f'| `{name}` | {calls} | {1e3 * own / samples:.3f} | {100 * own / whole:.0f}% |')
  return '\n'.join(lines)


def _table(r):
  return '\n'.join([
      f'Codes: {r["samples"]} synthetic {"x".join(map(str, r["shape"]))}, reference weights; '
      f'{r["threads"]} threads; 1-min load average at the end {r["load_average_1min"]:.2f}.',
      '',
      '| measure | value |',
      '|---|---|',
      f'| encode (wall, {r["threads"]} threads) | {r["encode_samples_per_s"]:.0f} samples/s |',
      f'| decode (wall, {r["threads"]} threads) | {r["decode_samples_per_s"]:.0f} samples/s |',
      f'| encode CPU, 1 thread | {r["encode_cpu_ms_per_sample_1_thread"]:.2f} ms/sample |',
      f'| decode CPU, 1 thread | {r["decode_cpu_ms_per_sample_1_thread"]:.2f} ms/sample |',
      f'| naive decoder (full forward per pixel, extrapolated) | {r["naive_decode_s_per_sample"]:.1f} '
      f's/sample = {r["naive_decode_samples_per_s"]:.4f} samples/s |',
      f'| decode speed-up vs naive (wall) | {r["decode_speedup_vs_naive"]:,.0f}x |',
      f'| decode speed-up vs naive (1 thread, CPU time) | {r["decode_speedup_vs_naive_1_thread_cpu"]:,.0f}x |',
      f'| theoretical code length | {r["theory_bits_per_bit"]:.5f} bits/bit |',
      f'| real payload | {r["payload_bits_per_bit"]:.5f} bits/bit ({r["payload_gap_percent"]:+.3f}% vs theory) |',
      f'| real file incl. header | {r["file_bits_per_bit"]:.5f} bits/bit ({r["file_gap_percent"]:+.3f}%) |',
      f'| zstd -19 on packed bits | {r["zstd19_bits_per_bit"]:.5f} bits/bit |',
      f'| xz -9e on packed bits | {r["xz9e_bits_per_bit"]:.5f} bits/bit |',
  ])


if __name__ == '__main__':
  sys.exit(main())
