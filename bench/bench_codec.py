"""Benchmark of the real codec: incremental engine vs the naive decoder, size vs theory and vs
classical coders, in one run.

On synthetic 35x48x8 codes (`generate_codes`) with the reference weights of the original
(tests/data/reference, synthetic config layer_depth 2, layer_count 8):
1. encode and decode samples/s of `codec.compress` / `codec.decompress`: with `--threads`, and
   with 1 thread, each the best of `--repeats` runs, wall time and CPU time both (CPU time is
   the whole process's: all threads);
2. the naive decoder (`codec.naive`: re-evaluates rows 0..y of the layer being decoded at every
   pixel step, earlier layers' states computed once, vectorised numpy, float32, BLAS on 1 thread)
   on as many codes as one chunk of the engine (256), measured exactly as the engine's 1-thread
   decode (best of `--repeats`, wall and CPU). It decodes `--naive-layers` whole layers and is
   extrapolated to all layers: every layer costs the same (same array shapes; each timed layer
   includes its next-state update, which the last layer does not need: +0.2%). Its decoded
   layers are checked against the input;
3. real size (file and payload) against the theoretical code length, zstd -19 / xz -9 on the
   same packed codes (np.packbits, 1 bit per bit), and the header's share on small files (one
   16x16x8 code, 500 of them, one 35x48x8 code), in the current format (version 2) and in
   version 1.

`--images N` measures instead one file per image: N one-code .npz files of mixed small shapes
(IMAGE_SHAPES), compressed and decompressed by the CLI in one process (`compress DIR -o OUT/`)
and by one process per file (the first `--per-process` files), every run timed by its wall
clock from outside (subprocess), the same way; the one-time start-up (a process coding one
1x1x2 code); and in this process, the API one file at a time (`compress_with_stats` per file,
what one process per file runs) against `compress_each` / `decompress_each` (the CLI's path:
equal shapes share engine batches, a stream each), best of `--repeats`.

`--large` measures instead one large code per case (LARGE_CASES: 512x512x8 at layer_depth 1,
32x48x512 at layer_depth 32, channel-causal ones, the reference weights on 256x256x16), encoded
and decoded by the engine and the range coder as codec.api codes a chunk, with the raster
schedule (coder 1, the path before the wavefront: the baseline) and the wavefront schedule
(coder 2) in the same run; CPU and wall times.

Prints a Markdown table for docs/BENCHMARKS.md (and `--json` for machines).

    .venv/bin/python bench/bench_codec.py --repeats 3 --breakdown   # 512 codes, about 2 minutes
    .venv/bin/python bench/bench_codec.py --samples 128             # quicker
    .venv/bin/python bench/bench_codec.py --images 500 --repeats 3  # one file per image
    .venv/bin/python bench/bench_codec.py --large --repeats 2       # one large code, ~10 minutes
"""
import argparse
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import threadpoolctl
import zstandard

from entropy_coder import codec, codes_format, model_files
from entropy_coder.codec import bitstream, engine, naive, engine_weights, range_coder
from entropy_coder.data_gen import synthetic

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests',
                         'data', 'reference', 'weights_step25284.npz')


def _parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--samples', type=int, default=512)
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--repeats', type=int, default=2,
                      help='best of this many timed runs (engine and naive decoder alike)')
  parser.add_argument('--naive-samples', type=int, default=None,
                      help='codes decoded together by the naive decoder (default: the engine\'s '
                      'chunk size for --samples codes)')
  parser.add_argument('--naive-layers', type=int, default=1,
                      help='whole layers the naive decoder decodes per timed run')
  parser.add_argument('--weights', default=REFERENCE)
  parser.add_argument('--seed', type=int, default=2017)
  parser.add_argument('--json', help='also write the results to this JSON file')
  parser.add_argument('--breakdown', action='store_true',
                      help='also measure where the decoder spends its CPU time (1 thread)')
  parser.add_argument('--images', type=int, default=0,
                      help='instead: one file per image, this many one-code files of mixed shapes')
  parser.add_argument('--per-process', type=int, default=20,
                      help='with --images: files timed with one process each')
  parser.add_argument('--large', action='store_true',
                      help='instead: one large code per case (LARGE_CASES), the wavefront '
                      'schedule against the raster one')
  parser.add_argument('--large-cases', nargs='*', default=None,
                      help='with --large: only the cases whose name contains one of these')
  parser.add_argument('--raster-repeats', type=int, default=1,
                      help='with --large: timed runs of the raster baseline')
  parser.add_argument('--format-version', type=int, default=bitstream.VERSION,
                      help='the container the default mode writes (3: the model stream alone, '
                      '4: mixed; default %(default)s)')
  return parser.parse_args()


def _best(fn, repeats):
  """(best wall seconds, best CPU seconds, last result) over `repeats` runs; the two minima
  may come from different runs. CPU time is process_time: every thread of the process."""
  wall = cpu = float('inf')
  result = None
  for _ in range(repeats):
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall = min(wall, time.perf_counter() - start_wall)
    cpu = min(cpu, time.process_time() - start_cpu)
  return wall, cpu, result


def main():
  args = _parse()
  if args.images:
    return _images_main(args)
  if args.large:
    return _large_main(args)
  with tempfile.TemporaryDirectory() as model_dir:
    weights = dict(np.load(args.weights, allow_pickle=False))
    model_files.write_model_files(model_dir, weights, {'layer_depth': 2, 'layer_count': 8})
    files = model_files.read_model_files(model_dir)
  net = engine_weights.build_network(files)
  codes = list(synthetic.generate_codes(args.seed, 0, args.samples))
  n = len(codes)
  bits = sum(code.size for code in codes)
  r = args.repeats

  version = args.format_version
  codec.decompress(codec.compress(codes[:2], files, format_version=version), files)  # compile
  data, stats = codec.compress_with_stats(codes, files, threads=args.threads,
                                          format_version=version)  # sizes, theory
  header = codec.read_header(data)
  enc_wall, enc_cpu, timed_data = _best(
      lambda: codec.compress(codes, files, threads=args.threads, format_version=version), r)
  assert timed_data == data
  dec_wall, dec_cpu, restored = _best(
      lambda: codec.decompress(data, files, threads=args.threads), r)
  assert all(np.array_equal(a, b) for a, b in zip(restored, codes)), 'round trip failed'
  # 1 thread: the same file, the same chunks
  enc1_wall, enc1_cpu, _ = _best(
      lambda: codec.compress(codes, files, threads=1, format_version=version), r)
  dec1_wall, dec1_cpu, _ = _best(lambda: codec.decompress(data, files, threads=1), r)

  naive_results = _naive(net, codes, args.naive_samples or header.chunks[0].samples,
                         args.naive_layers, r)

  packed = b''.join(np.packbits(code.reshape(-1)).tobytes() for code in codes)
  zstd_bytes = len(zstandard.ZstdCompressor(level=19).compress(packed))
  xz_bytes = len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME))

  per = lambda seconds: 1e3 * seconds / n
  results = {
      'samples': n, 'shape': list(codes[0].shape), 'threads': args.threads, 'code_bits': bits,
      'format_version': version,
      'repeats': r, 'chunk_samples': [c.samples for c in header.chunks],
      'encode_samples_per_s': n / enc_wall, 'decode_samples_per_s': n / dec_wall,
      'encode_cpu_ms_per_sample': per(enc_cpu), 'decode_cpu_ms_per_sample': per(dec_cpu),
      'encode_wall_ms_per_sample_1_thread': per(enc1_wall),
      'encode_cpu_ms_per_sample_1_thread': per(enc1_cpu),
      'decode_wall_ms_per_sample_1_thread': per(dec1_wall),
      'decode_cpu_ms_per_sample_1_thread': per(dec1_cpu),
      **naive_results,
      'decode_speedup_vs_naive_1_thread_wall':
          naive_results['naive_decode_wall_s_per_sample'] / (dec1_wall / n),
      'decode_speedup_vs_naive_1_thread_cpu':
          naive_results['naive_decode_cpu_s_per_sample'] / (dec1_cpu / n),
      'theory_bits_per_bit': stats.theoretical_bits_per_bit,
      'payload_bits_per_bit': stats.payload_bits_per_bit,
      'file_bits_per_bit': stats.bits_per_bit,
      'payload_gap_percent': 100 * stats.gap,
      'file_gap_percent': 100 * (8 * stats.file_bytes / stats.theoretical_bits - 1),
      'header_bytes': stats.file_bytes - stats.payload_bytes,
      'zstd19_bits_per_bit': 8 * zstd_bytes / bits,
      'xz9e_bits_per_bit': 8 * xz_bytes / bits,
      'small_files': _small_files(files, args.seed),
      'load_average_1min': os.getloadavg()[0],
  }
  if args.breakdown:
    sub = codes[:min(n, 256)]
    sub_data = codec.compress(sub, files, threads=1)
    results['decode_breakdown_1_thread'] = _breakdown(net, files, sub_data, max(3, r))
  print(_table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


def _naive(net, codes, batch_size, layers, repeats):
  """The naive decoder on `batch_size` codes (one batch), `layers` whole layers per timed run,
  BLAS limited to 1 thread; extrapolated to all layers of a code."""
  batch = np.stack(codes[:batch_size])
  _, height, width, depth = batch.shape
  cd = net.layer_depth
  total_layers = depth // cd
  layers = min(layers, total_layers)
  with threadpoolctl.threadpool_limits(1):
    data = naive.naive_encode(net, batch)
    wall, cpu, partial = _best(
        lambda: naive.naive_decode(net, data, batch.shape, max_steps=layers * height * width),
        repeats)
  assert np.array_equal(partial[..., :layers * cd], batch[..., :layers * cd]), 'naive decode failed'
  scale = total_layers / layers / len(batch)
  return {'naive_samples': len(batch), 'naive_layers_timed': layers,
          'naive_layers_per_sample': total_layers,
          'naive_decode_wall_s_per_sample': wall * scale,
          'naive_decode_cpu_s_per_sample': cpu * scale,
          'naive_timed_wall_s': wall, 'naive_timed_cpu_s': cpu}


def _small_files(files, seed):
  """Header share on small files: one 16x16x8 code (the demo's shape), 500 of them (the demo
  pipeline's eval split), one 35x48x8 code. Percent over the payload and over the theory, in
  version 2 (what compress writes) and version 1 (before)."""
  rows = []
  for shape, count in (((16, 16, 8), 1), ((16, 16, 8), 500), ((35, 48, 8), 1)):
    codes = list(synthetic.generate_codes(seed, 0, count, shape=shape))
    data, stats = codec.compress_with_stats(codes, files, threads=1, format_version=2)
    data_v1 = codec.compress(codes, files, threads=1, format_version=1)
    rows.append({
        'shape': list(shape), 'codes': count, 'file_bytes': stats.file_bytes,
        'payload_bytes': stats.payload_bytes, 'theory_bytes': stats.theoretical_bits / 8,
        'header_bytes': stats.file_bytes - stats.payload_bytes,
        'file_over_payload_percent': 100 * (stats.file_bytes / stats.payload_bytes - 1),
        'file_over_theory_percent': 100 * (8 * stats.file_bytes / stats.theoretical_bits - 1),
        'payload_over_theory_percent': 100 * stats.gap,
        'v1_file_bytes': len(data_v1), 'v1_header_bytes': len(data_v1) - stats.payload_bytes,
        'v1_file_over_payload_percent': 100 * (len(data_v1) / stats.payload_bytes - 1),
        'v1_file_over_theory_percent': 100 * (8 * len(data_v1) / stats.theoretical_bits - 1)})
  return rows


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
  shape = 'x'.join(map(str, r['shape']))
  return '\n'.join([
      f'Codes: {r["samples"]} synthetic {shape}, reference weights, chunks of '
      f'{r["chunk_samples"]}; best of {r["repeats"]} runs for every time; 1-min load average at '
      f'the end {r["load_average_1min"]:.2f}.',
      '',
      '| measure | value |',
      '|---|---|',
      f'| encode, {r["threads"]} threads | {r["encode_samples_per_s"]:.0f} samples/s wall '
      f'({r["encode_cpu_ms_per_sample"]:.2f} ms/sample CPU) |',
      f'| decode, {r["threads"]} threads | {r["decode_samples_per_s"]:.0f} samples/s wall '
      f'({r["decode_cpu_ms_per_sample"]:.2f} ms/sample CPU) |',
      f'| encode, 1 thread | {r["encode_wall_ms_per_sample_1_thread"]:.2f} ms/sample wall, '
      f'{r["encode_cpu_ms_per_sample_1_thread"]:.2f} CPU |',
      f'| decode, 1 thread | {r["decode_wall_ms_per_sample_1_thread"]:.2f} ms/sample wall, '
      f'{r["decode_cpu_ms_per_sample_1_thread"]:.2f} CPU |',
      f'| naive decoder, 1 thread, batch {r["naive_samples"]} ({r["naive_layers_timed"]} of '
      f'{r["naive_layers_per_sample"]} layers timed, extrapolated) | '
      f'{r["naive_decode_wall_s_per_sample"]:.3f} s/sample wall, '
      f'{r["naive_decode_cpu_s_per_sample"]:.3f} CPU |',
      f'| **decode speed-up vs naive, 1 thread each** | '
      f'**{r["decode_speedup_vs_naive_1_thread_wall"]:,.0f}x wall, '
      f'{r["decode_speedup_vs_naive_1_thread_cpu"]:,.0f}x CPU** |',
      f'| theoretical code length | {r["theory_bits_per_bit"]:.5f} bits/bit |',
      f'| real payload | {r["payload_bits_per_bit"]:.5f} bits/bit ({r["payload_gap_percent"]:+.3f}% vs theory) |',
      f'| real file incl. header | {r["file_bits_per_bit"]:.5f} bits/bit ({r["file_gap_percent"]:+.3f}%) |',
      f'| zstd -19 on packed bits | {r["zstd19_bits_per_bit"]:.5f} bits/bit |',
      f'| xz -9e on packed bits | {r["xz9e_bits_per_bit"]:.5f} bits/bit |',
  ] + _small_file_rows(r['small_files']) + _breakdown_rows(r.get('decode_breakdown_1_thread')))


def _small_file_rows(rows):
  out = ['', 'Small files (header share), version 2; version 1 was:', '',
         '| file | bytes: file / payload / theory | header | file vs payload | file vs theory '
         '| v1: file, header, vs payload |',
         '|---|---|---|---|---|---|']
  for row in rows:
    out.append(f'| {row["codes"]} x {"x".join(map(str, row["shape"]))} | {row["file_bytes"]:,} / '
               f'{row["payload_bytes"]:,} / {row["theory_bytes"]:,.1f} | {row["header_bytes"]:,} B '
               f'| {row["file_over_payload_percent"]:+.1f}% | {row["file_over_theory_percent"]:+.1f}% '
               f'| {row["v1_file_bytes"]:,}, {row["v1_header_bytes"]:,} B, '
               f'{row["v1_file_over_payload_percent"]:+.1f}% |')
  return out


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


# ---- one file per image ------------------------------------------------------------------------

# Mixed small shapes: the demo's 16x16x8, the 22x48x16, the sample's 31x36x8, the
# synthetic 35x48x8, and 20x30x16.
IMAGE_SHAPES = ((16, 16, 8), (22, 48, 16), (31, 36, 8), (35, 48, 8), (20, 30, 16))


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  start = time.perf_counter()
  done = subprocess.run([sys.executable, '-m', 'entropy_coder.cli', *args], capture_output=True,
                        text=True, env=env, check=False)
  seconds = time.perf_counter() - start
  if done.returncode:
    raise RuntimeError(f'{args}: {done.stderr}')
  return seconds


def _images_main(args):
  n, r, threads = args.images, args.repeats, str(args.threads)
  with tempfile.TemporaryDirectory() as work:
    model_dir = os.path.join(work, 'model')
    weights = dict(np.load(args.weights, allow_pickle=False))
    model_files.write_model_files(model_dir, weights, {'layer_depth': 2, 'layer_count': 8})
    files = model_files.read_model_files(model_dir)
    images, out, back = (os.path.join(work, name) for name in ('images', 'out', 'back'))
    for directory in (images, out, back):
      os.makedirs(directory)
    codes = [synthetic.generate_codes(args.seed, [i], shape=IMAGE_SHAPES[i % len(IMAGE_SHAPES)])[0]
             for i in range(n)]
    paths = [os.path.join(images, f'img{i:05d}.npz') for i in range(n)]
    for path, code in zip(paths, codes):
      codes_format.write_npz(path, code, 2)
    bits = sum(code.size for code in codes)

    # In this process: the API one file at a time, and the CLI's batched path.
    codec.warm_up(files)
    inputs = [([code], bitstream.SOURCE_NPZ, 2) for code in codes]
    alone_wall, alone_cpu, alone = _best(
        lambda: [codec.compress_with_stats(*item[:1], files, source_format=bitstream.SOURCE_NPZ,
                                           source_layer_depth=2, threads=args.threads)
                 for item in inputs], r)
    each_wall, each_cpu, each = _best(
        lambda: list(codec.compress_each(inputs, files, threads=args.threads)), r)
    assert [data for data, _ in each] == [data for data, _ in alone]
    datas = [(data, path) for (data, _), path in zip(each, paths)]
    dec_alone_wall, dec_alone_cpu, _ = _best(
        lambda: [codec.decompress_with_stats(data, files, source=source, threads=args.threads)
                 for data, source in datas], r)
    dec_each_wall, dec_each_cpu, restored = _best(
        lambda: list(codec.decompress_each(datas, files, threads=args.threads)), r)
    assert all(np.array_equal(result[0][0], code) for result, code in zip(restored, codes))
    file_bytes = sum(stats.file_bytes for _, stats in each)
    payload_bytes = sum(stats.payload_bytes for _, stats in each)
    theory_bits = sum(stats.theoretical_bits for _, stats in each)
    v1_bytes = sum(len(codec.compress([code], files, source_format=bitstream.SOURCE_NPZ,
                                      source_layer_depth=2, format_version=1)) for code in codes)

    # The CLI, timed from outside: one process for all, one process per file, the start-up.
    tiny = os.path.join(work, 'tiny.npz')
    codes_format.write_npz(tiny, np.ones((1, 1, 2), np.uint8), 2)
    startup = min(_cli('compress', '--model', model_dir, tiny, '-o', os.path.join(work, 'tiny.nec'),
                       '--overwrite', '--threads', threads) for _ in range(r))
    one_compress = min(_cli('compress', '--model', model_dir, images, '-o', out, '--overwrite',
                            '--threads', threads) for _ in range(r))
    one_decompress = min(_cli('decompress', '--model', model_dir, out, '-o', back, '--overwrite',
                              '--threads', threads) for _ in range(r))
    m = min(n, args.per_process)
    per_compress = sum(_cli('compress', '--model', model_dir, path, '-o', path + '.nec',
                            '--threads', threads) for path in paths[:m])
    per_decompress = sum(_cli('decompress', '--model', model_dir, path + '.nec', '-o',
                              path + '.back.npz', '--threads', threads) for path in paths[:m])
    for path, code in zip(paths[:m], codes):
      assert np.array_equal(codes_format.read_npz(path + '.back.npz')[0], code)
    for name in sorted(os.listdir(out))[:m]:
      with open(os.path.join(out, name), 'rb') as f1, open(
          os.path.join(images, name), 'rb') as f2:
        assert f1.read() == f2.read(), name  # one process per file wrote the same bytes
  ms = lambda seconds, count=n: 1e3 * seconds / count  # pylint: disable=unnecessary-lambda-assignment
  results = {
      'images': n, 'shapes': [list(shape) for shape in IMAGE_SHAPES], 'code_bits': bits,
      'threads': args.threads, 'repeats': r, 'per_process_files': m,
      'api_one_at_a_time_compress_ms': ms(alone_wall), 'api_one_at_a_time_compress_cpu_ms': ms(alone_cpu),
      'api_each_compress_ms': ms(each_wall), 'api_each_compress_cpu_ms': ms(each_cpu),
      'api_one_at_a_time_decompress_ms': ms(dec_alone_wall),
      'api_one_at_a_time_decompress_cpu_ms': ms(dec_alone_cpu),
      'api_each_decompress_ms': ms(dec_each_wall), 'api_each_decompress_cpu_ms': ms(dec_each_cpu),
      'cli_startup_s': startup,
      'cli_one_process_compress_s': one_compress, 'cli_one_process_decompress_s': one_decompress,
      'cli_one_process_compress_ms_per_image': ms(one_compress),
      'cli_one_process_decompress_ms_per_image': ms(one_decompress),
      'cli_process_per_file_compress_ms_per_image': ms(per_compress, m),
      'cli_process_per_file_decompress_ms_per_image': ms(per_decompress, m),
      'file_bytes': file_bytes, 'payload_bytes': payload_bytes, 'theory_bytes': theory_bits / 8,
      'v1_file_bytes': v1_bytes, 'load_average_1min': os.getloadavg()[0],
  }
  print(_images_table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


def _images_table(r):
  n = r['images']
  shapes = ', '.join('x'.join(map(str, shape)) for shape in r['shapes'])
  rate = lambda ms: f'{1e3 / ms:,.1f} images/s'  # pylint: disable=unnecessary-lambda-assignment
  over = lambda size: (size - r['payload_bytes']) / n  # pylint: disable=unnecessary-lambda-assignment
  return '\n'.join([
      f'{n} one-code .npz files, shapes {shapes} in turn ({r["code_bits"]:,} bits), reference '
      f'weights, --threads {r["threads"]}; CLI runs timed from outside (wall), best of '
      f'{r["repeats"]} except one process per file ({r["per_process_files"]} files, each once); '
      f'1-min load average at the end {r["load_average_1min"]:.2f}.',
      '',
      '| one file per image | compress | decompress |',
      '|---|---|---|',
      f'| CLI, one process per file | {r["cli_process_per_file_compress_ms_per_image"]:,.0f} ms/image '
      f'({rate(r["cli_process_per_file_compress_ms_per_image"])}) | '
      f'{r["cli_process_per_file_decompress_ms_per_image"]:,.0f} ms/image '
      f'({rate(r["cli_process_per_file_decompress_ms_per_image"])}) |',
      f'| CLI, one process for all {n} (`compress DIR -o OUT/`) | '
      f'{r["cli_one_process_compress_s"]:.2f} s = {r["cli_one_process_compress_ms_per_image"]:.1f} '
      f'ms/image ({rate(r["cli_one_process_compress_ms_per_image"])}) | '
      f'{r["cli_one_process_decompress_s"]:.2f} s = {r["cli_one_process_decompress_ms_per_image"]:.1f} '
      f'ms/image ({rate(r["cli_one_process_decompress_ms_per_image"])}) |',
      f'| CLI start-up (a process coding one 1x1x2 code) | {r["cli_startup_s"]:.2f} s | |',
      f'| API in one process, one file at a time (`compress_with_stats` per file) | '
      f'{r["api_one_at_a_time_compress_ms"]:.1f} ms/image wall, {r["api_one_at_a_time_compress_cpu_ms"]:.1f} CPU | '
      f'{r["api_one_at_a_time_decompress_ms"]:.1f} ms/image wall, {r["api_one_at_a_time_decompress_cpu_ms"]:.1f} CPU |',
      f'| API in one process, `compress_each` / `decompress_each` (the CLI\'s) | '
      f'{r["api_each_compress_ms"]:.1f} ms/image wall, {r["api_each_compress_cpu_ms"]:.1f} CPU | '
      f'{r["api_each_decompress_ms"]:.1f} ms/image wall, {r["api_each_decompress_cpu_ms"]:.1f} CPU |',
      '',
      f'Sizes: {r["file_bytes"]:,} bytes in {n} files, payload {r["payload_bytes"]:,}, theory '
      f'{r["theory_bytes"]:,.0f}: {over(r["file_bytes"]):.1f} bytes per file beside the payload '
      f'(version 1: {over(r["v1_file_bytes"]):.1f}); files '
      f'{100 * (8 * r["file_bytes"] / (8 * r["theory_bytes"]) - 1):+.2f}% over theory (version 1 '
      f'{100 * (r["v1_file_bytes"] / r["theory_bytes"] - 1):+.2f}%).',
  ])


# ---- one large code: the wavefront schedule (coder 2) against the raster one (coder 1) -----------

# (name, (H, W, D), layer_depth, channel_causal, weights): 'random' = random weights of the
# model's shapes (seeded; speed does not depend on the weights' values), 'reference' = the
# reference weights (layer_depth 2, 8 layers).
LARGE_CASES = (
    ('512x512x8, layer_depth 1, 8 layers', (512, 512, 8), 1, False, 'random'),
    ('32x48x512, layer_depth 32, 16 layers', (32, 48, 512), 32, False, 'random'),
    ('256x256x8, layer_depth 8, 1 layer, channel-causal', (256, 256, 8), 8, True, 'random'),
    ('32x48x256, layer_depth 32, 8 layers, channel-causal', (32, 48, 256), 32, True, 'random'),
    ('256x256x16, layer_depth 2, 8 layers (reference weights)', (256, 256, 16), 2, False,
     'reference'),
)


def _random_model(layer_depth, layers, causal, seed):
  """ModelFiles with seeded random weights of the model's shapes (channel_ar masked)."""
  from entropy_coder.trainer import config as model_config  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer import spec  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  config = model_config.ModelConfig(layer_depth=layer_depth, layer_count=layers,
                                    channel_causal=causal)
  weights = {name: rng.normal(0, 0.3, shape).astype(np.float32)
             for name, shape in spec.weight_shapes(config).items()}
  files = model_files.ModelFiles(weights=weights, fingerprint='0' * 64, path='<random>',
                                 model_config={'layer_depth': layer_depth, 'layer_count': layers,
                                               'coded_layer_count': 0, 'channel_causal': causal})
  return files


def _engine_run(net, codes, coder_id, repeats):
  """Encode then decode one batch with the engine and the range coder, as codec.api does per
  chunk -> (encode wall, encode CPU, decode wall, decode CPU, stream bytes), best of repeats."""
  batch, height, width, depth = codes.shape
  layers = depth // net.layer_depth

  def encode():
    encoder = range_coder.StreamEncoder()
    engine.ChunkCoder(net, batch, height, width, layers, coder_id).encode(
        codes, lambda k, p, q, bits: encoder.encode(bits, q))
    return encoder.finish()

  enc_wall, enc_cpu, stream = _best(encode, repeats)

  def decode():
    decoder = range_coder.StreamDecoder(stream, 'bench')
    decoded = engine.ChunkCoder(net, batch, height, width, layers, coder_id).decode(
        decoder.decode, lambda *args: None)
    decoder.check_consumed()
    return decoded

  dec_wall, dec_cpu, decoded = _best(decode, repeats)
  assert np.array_equal(decoded, codes), 'round trip failed'
  return enc_wall, enc_cpu, dec_wall, dec_cpu, stream


def _mixed_run(net, codes, coder_id, repeats):
  """_engine_run with version 4's model stream: every layer through the mixer
  (codec/mixing.py) and the binary range coder, as codec.api codes a chunk's MODEL layers."""
  from entropy_coder.codec import api, mixing  # pylint: disable=g-import-not-at-top
  batch, height, width, depth = codes.shape
  layers = depth // net.layer_depth

  def encode():
    coder = engine.ChunkCoder(net, batch, height, width, layers, coder_id)
    mixer, symbols = api._mixer(net, coder), []  # pylint: disable=protected-access

    def layer_done(k, p, q, bits):
      symbols.append((bits.copy(), mixer.pass_layer(k, q, bits)))

    coder.encode(codes, layer_done)
    return mixing.encode_stream(np.concatenate([b for b, _ in symbols]),
                                np.concatenate([q for _, q in symbols]))

  enc_wall, enc_cpu, stream = _best(encode, repeats)

  def decode():
    coder = engine.ChunkCoder(net, batch, height, width, layers, coder_id)
    mixer = api._mixer(net, coder)  # pylint: disable=protected-access
    mixer.start_decoding([stream])
    decoded = coder.decode(mixer.decode, lambda *args: None)
    assert mixer.used_exactly(0)
    return decoded

  dec_wall, dec_cpu, decoded = _best(decode, repeats)
  assert np.array_equal(decoded, codes), 'round trip failed'
  return enc_wall, enc_cpu, dec_wall, dec_cpu, stream


def _large_main(args):
  """One code per case, coder 1 (today's raster schedule, the baseline) and coder 2 (wavefront)
  in the same run; `--raster-repeats` runs of the (slow) baseline, `--repeats` of the rest."""
  rows = []
  for name, shape, layer_depth, causal, weights in LARGE_CASES:
    if args.large_cases and not any(part in name for part in args.large_cases):
      continue
    layers = shape[2] // layer_depth
    if weights == 'reference':
      with tempfile.TemporaryDirectory() as model_dir:
        model_files.write_model_files(model_dir, dict(np.load(args.weights, allow_pickle=False)),
                                      {'layer_depth': 2, 'layer_count': 8})
        files = model_files.read_model_files(model_dir)
    else:
      files = _random_model(layer_depth, layers, causal, args.seed)
    net = engine_weights.build_network(files)
    rng = np.random.default_rng(args.seed)
    codes = (rng.random((1,) + shape) < 0.3).astype(np.uint8)
    tiny = codes[:, :5, :9]
    for coder_id in (bitstream.CODER_RASTER, bitstream.CODER_WAVEFRONT):  # numba cache loaded
      _engine_run(net, tiny, coder_id, 1)
    _mixed_run(net, tiny, bitstream.CODER_WAVEFRONT, 1)
    row = {'case': name, 'shape': list(shape), 'code_bits': codes.size,
           'weights': weights}
    for coder_id, label, repeats, run in (
        (bitstream.CODER_RASTER, 'raster', args.raster_repeats, _engine_run),
        (bitstream.CODER_WAVEFRONT, 'wavefront', args.repeats, _engine_run),
        (bitstream.CODER_WAVEFRONT, 'mixed', args.repeats, _mixed_run)):
      enc_wall, enc_cpu, dec_wall, dec_cpu, stream = run(net, codes, coder_id, repeats)
      row.update({f'{label}_encode_s': enc_wall, f'{label}_encode_cpu_s': enc_cpu,
                  f'{label}_decode_s': dec_wall, f'{label}_decode_cpu_s': dec_cpu,
                  f'{label}_stream_bytes': len(stream)})
      print(f'{name}: {label} encode {enc_wall:.2f} s, decode {dec_wall:.2f} s', file=sys.stderr)
    rows.append(row)
  results = {'cases': rows, 'repeats': args.repeats, 'raster_repeats': args.raster_repeats,
             'load_average_1min': os.getloadavg()[0]}
  print(_large_table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


def _comparison_rows(cases, before, after, digits):
  """Table rows of two variants of each case (row keys '<before>_<what>', '<after>_<what>'):
  decode CPU, decode wall and encode CPU Mbit/s with the speed-up, and the stream bytes."""
  mbit = lambda bits, seconds: f'{bits / seconds / 1e6:.2f}'  # pylint: disable=unnecessary-lambda-assignment
  rows = []
  for c in cases:
    bits = c['code_bits']
    cells = []
    for what in ('decode_cpu_s', 'decode_s', 'encode_cpu_s'):
      old, new = c[f'{before}_{what}'], c[f'{after}_{what}']
      cells.append(f'{mbit(bits, old)} / **{mbit(bits, new)}**, {old / new:.{digits}f}x')
    rows.append(f'| {c["case"]} | ' + ' | '.join(cells) +
                f' | {c[f"{before}_stream_bytes"]:,} / {c[f"{after}_stream_bytes"]:,} |')
  return rows


def _large_table(r):
  out = [f'One code per case, 1 thread, engine + range coder as codec.api runs a chunk; '
         f'wavefront best of {r["repeats"]}, raster best of {r["raster_repeats"]}; 1-min load '
         f'average at the end {r["load_average_1min"]:.2f}. Mbit/s of code, by CPU time (the '
         f'process\'s) and by wall time.', '',
         '| code | decode Mbit/s CPU: raster (coder 1) / wavefront (coder 2), speed-up | '
         'decode Mbit/s wall: raster / wavefront, speed-up | encode Mbit/s CPU: raster / '
         'wavefront, speed-up | stream bytes: raster / wavefront |',
         '|---|---|---|---|---|']
  out += _comparison_rows(r['cases'], 'raster', 'wavefront', 1)
  if r['cases'] and 'mixed_decode_cpu_s' in r['cases'][0]:
    out += ['', 'Version 4\'s model stream (wavefront, every layer through the mixer and the binary '
            'range coder) against version 3\'s (wavefront, constriction), same run:', '',
            '| code | decode Mbit/s CPU: v3 stream / v4 stream, v4 / v3 | decode Mbit/s wall | '
            'encode Mbit/s CPU | stream bytes (random codes) |', '|---|---|---|---|---|']
    out += _comparison_rows(r['cases'], 'wavefront', 'mixed', 2)
  return '\n'.join(out)


if __name__ == '__main__':
  sys.exit(main())
