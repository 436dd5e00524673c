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

    .venv/bin/python bench/bench_codec.py --breakdown     # 512 codes, about 1-2 minutes
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
from entropy_coder.codec import bitstream, engine, naive, network, range_coder
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
  parser.add_argument('--breakdown', action='store_true',
                      help='also measure where the decoder spends its CPU time (1 thread)')
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
  data, stats = codec.compress_with_stats(codes, files, threads=args.threads)  # sizes, theory
  enc_s, timed_data = _best(lambda: codec.compress(codes, files, threads=args.threads), args.repeats)
  assert timed_data == data
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
  if args.breakdown:
    results['decode_breakdown_1_thread'] = _breakdown(net, files, sub_data, max(3, args.repeats))
  print(_table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


def _breakdown(net, files, data, repeats):
  """Where one thread's decode CPU time goes, per code. Four runs, interleaved, best of
  `repeats` each: the whole decode; the decoder's loop with recorded bits instead of
  constriction (engine + Python step loop); the encoder's numba loop (the same engine kernels,
  no Python per step); constriction alone (the decoder's exact decode calls replayed).
  Measured directly rather than with cProfile, whose per-call cost would swamp a ~10 us step."""
  header = codec.read_header(data)
  payloads = list(bitstream.chunk_payloads(data, header))
  chunks = header.chunks
  recorded = []  # per chunk: [(probs, bits)] of every decode call

  def recording(decoder, calls):
    def decode_bits(probs):
      bits = decoder.decode(probs)
      calls.append((probs.copy(), bits))
      return bits
    return decode_bits

  codes = []
  for chunk, payload in zip(chunks, payloads):
    recorded.append([])
    coder = engine.ChunkCoder(net, chunk.samples, chunk.height, chunk.width, chunk.depth // 2)
    codes.append(coder.decode(recording(range_coder.StreamDecoder(payload, 'bench'), recorded[-1]),
                              lambda *args: None))

  def whole():
    codec.decompress(data, files, threads=1)

  def replayed_bits():
    for chunk, calls in zip(chunks, recorded):
      replay = iter([bits for _, bits in calls])
      engine.ChunkCoder(net, chunk.samples, chunk.height, chunk.width, chunk.depth // 2).decode(
          lambda probs: next(replay), lambda *args: None)

  def engine_only():
    for chunk, chunk_codes in zip(chunks, codes):
      engine.ChunkCoder(net, chunk.samples, chunk.height, chunk.width,
                        chunk.depth // 2).encode(chunk_codes, lambda *args: None)

  def constriction_only():
    for payload, calls in zip(payloads, recorded):
      decoder = range_coder.StreamDecoder(payload, 'bench')
      for probs, _ in calls:
        decoder.decode(probs)

  runs = {'decode_ms': whole, 'replayed_ms': replayed_bits, 'engine_ms': engine_only,
          'constriction_ms': constriction_only}
  best = {name: float('inf') for name in runs}
  for _ in range(repeats):
    for name, fn in runs.items():
      start = time.process_time()
      fn()
      best[name] = min(best[name], time.process_time() - start)
  result = {name: 1e3 * seconds / header.sample_count for name, seconds in best.items()}
  result.update(codes=header.sample_count, chunk_samples=[c.samples for c in chunks])
  return result


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
  ] + _breakdown_rows(r.get('decode_breakdown_1_thread')))


def _breakdown_rows(b):
  if not b:
    return []
  share = lambda ms: f'{100.0 * ms / b["decode_ms"]:.0f}%'
  loop = b['replayed_ms'] - b['engine_ms']
  rest = b['decode_ms'] - b['replayed_ms'] - b['constriction_ms']
  return [
      '',
      f'Decoder CPU time, 1 thread, {b["codes"]} codes in chunks of {b["chunk_samples"]} '
      '(best of interleaved runs):',
      '',
      '| part | ms per code | share of the decode |',
      '|---|---|---|',
      f'| whole decode | {b["decode_ms"]:.2f} | 100% |',
      f'| engine kernels (encoder\'s numba loop: pixel steps, state block, a1) | {b["engine_ms"]:.2f} | {share(b["engine_ms"])} |',
      f'| Python step loop + numba dispatch (decoder with replayed bits minus the above) | {loop:.2f} | {share(loop)} |',
      f'| constriction range decoding (the same calls replayed) | {b["constriction_ms"]:.2f} | {share(b["constriction_ms"])} |',
      f'| rest (CRCs, header, result assembly; noise) | {rest:.2f} | {share(rest)} |',
  ]


if __name__ == '__main__':
  sys.exit(main())
