"""`entropy-coder compress` / `decompress`: real files, real bytes, with the trained model.

    entropy-coder compress   --model DIR INPUT -o OUT        INPUT: .npz code or TFRecord file/glob
    entropy-coder decompress --model DIR OUT -o RESTORED     restores the input's format

The compressed file records the input's format (.npz with its layer_depth, or TFRecord plain or
GZIP), so `decompress` writes the same kind of file back. TFRecords are written in our packed
tf.Example layout whatever the input layout was; the codes are identical bit for bit.
"""
import glob
import os
import sys
import threading
import time


def register(subparsers):
  parser = subparsers.add_parser(
      'compress', help='losslessly compress codes with a trained model (real bitstream)',
      description='Compresses a .npz code or a TFRecord file/glob of codes into one file; prints '
      'the sizes, bits per bit, the ratio and the gap to the theoretical code length.')
  parser.add_argument('--model', required=True,
                      help='model directory (train output, Trainer artifact or Pusher destination)')
  parser.add_argument('input', help='.npz code (original format) or TFRecord file/glob of codes')
  parser.add_argument('-o', '--output', required=True, help='compressed file to write')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing output file')
  parser.add_argument('--threads', type=int, default=None,
                      help='worker threads (default: all cores); the output does not depend on it')
  parser.set_defaults(func=run_compress)

  parser = subparsers.add_parser(
      'decompress', help='restore codes from a file written by compress',
      description='Decodes a compressed file with the model that wrote it and writes the codes '
      'back in the input\'s format (.npz or TFRecord).')
  parser.add_argument('--model', required=True,
                      help='model directory (train output, Trainer artifact or Pusher destination)')
  parser.add_argument('input', help='compressed file written by `entropy-coder compress`')
  parser.add_argument('-o', '--output', required=True, help='restored .npz or TFRecord file')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing output file')
  parser.add_argument('--threads', type=int, default=None,
                      help='worker threads (default: all cores); the output does not depend on it')
  parser.set_defaults(func=run_decompress)


class _ProgressLine:
  """One self-overwriting stderr line, shown only once a run has taken more than a second."""

  def __init__(self, label):
    self._label, self._start, self._last, self._shown = label, time.monotonic(), 0.0, False

  def __call__(self, done, total):
    now = time.monotonic()
    if now - self._start < 1.0 or (now - self._last < 0.25 and done < total):
      return
    self._last, self._shown = now, True
    rate = done / max(now - self._start, 1e-9)
    print(f'\r{self._label}: {100.0 * done / max(total, 1):5.1f}% of {total:,} bits '
          f'({rate / 1e6:.2f} Mbit/s)', end='', file=sys.stderr, flush=True)

  def close(self):
    if self._shown:
      print(file=sys.stderr, flush=True)


def _read_input(path):
  """INPUT -> (codes, source_format, source_layer_depth)."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.codec import bitstream  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  if path.endswith('.npz'):
    code, layer_depth = codes_format.read_npz(path)
    return [code], bitstream.SOURCE_NPZ, layer_depth
  paths = sorted(glob.glob(path)) if any(ch in path for ch in '*?[') else [path]
  if not paths:
    raise UserError(describe(path, 'no files match'))
  for name in paths:
    if not os.path.isfile(name):
      raise UserError(describe(name, 'no such file'))
  gzip_flags = {codes_format.is_gzip(name) for name in paths}
  codes = [code for _, code in codes_format.iter_tfrecord_codes(paths)]
  if not codes:
    raise UserError(describe(path, 'holds no codes'))
  fmt = bitstream.SOURCE_TFRECORD_GZIP if gzip_flags == {True} else bitstream.SOURCE_TFRECORD
  return codes, fmt, 0


def _write_output(path, codes, header, layer_depth):
  """Writes restored codes in the format the header records."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.codec import bitstream  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import example_wire, tfrecord_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  fmt = header.source_format
  if fmt == bitstream.SOURCE_API:  # written through the Python API: choose by extension
    fmt = bitstream.SOURCE_NPZ if path.endswith('.npz') else bitstream.SOURCE_TFRECORD_GZIP
  if fmt == bitstream.SOURCE_NPZ:
    if len(codes) != 1:
      raise UserError(describe(path, f'.npz holds one code but the file has {len(codes)}; '
                               'choose a TFRecord output name'))
    codes_format.write_npz(path, codes[0], header.source_layer_depth or layer_depth)
    return 'npz'
  records = (example_wire.encode_example(code) for code in codes)
  if fmt == bitstream.SOURCE_TFRECORD_GZIP:
    tfrecord_files.write_gzip_tfrecords(path, records)
    return 'GZIP TFRecord'
  with open(path, 'wb') as out:
    for record in records:
      out.write(tfrecord_files.frame_record(record))
  return 'TFRecord'


def _report(verb, stats, seconds):
  packed = stats.code_bits / 8.0
  return '\n'.join([
      f'{verb} {stats.samples} code(s), {stats.code_bits:,} bits, in {seconds:.2f} s '
      f'({stats.samples / max(seconds, 1e-9):.1f} codes/s)',
      f'packed bits  {packed:,.0f} bytes (1 bit per bit)',
      f'compressed   {stats.file_bytes:,} bytes = {stats.bits_per_bit:.5f} bits/bit, '
      f'ratio {packed / max(stats.file_bytes, 1):.4f}x (payload {stats.payload_bytes:,} bytes = '
      f'{stats.payload_bits_per_bit:.5f} bits/bit)',
      f'theory       {stats.theoretical_bits / 8:,.1f} bytes = {stats.theoretical_bits_per_bit:.5f} '
      f'bits/bit; payload gap {100.0 * stats.gap:+.3f}%',
  ])


def _ready_engine(files):
  """Readies the engine before real work, with a notice if numba has to compile it."""
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  ready = threading.Event()

  def notice():
    if not ready.wait(2.0):
      print('preparing the codec engine (numba compiles it on the first run, about a minute; '
            'later runs load it from the cache)...', file=sys.stderr, flush=True)

  threading.Thread(target=notice, daemon=True).start()
  try:
    codec.warm_up(files)
  finally:
    ready.set()


def _check_output(args):
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  if os.path.exists(args.output) and not args.overwrite:
    raise UserError(describe(args.output, 'exists; pass --overwrite to replace it'))


def run_compress(args):
  from entropy_coder import codec, model_files  # pylint: disable=g-import-not-at-top
  _check_output(args)
  files = model_files.read_model_files(args.model)
  codes, fmt, layer_depth = _read_input(args.input)
  _ready_engine(files)
  progress = _ProgressLine('compress')
  start = time.monotonic()
  try:
    data, stats = codec.compress_with_stats(codes, files, progress, source_format=fmt,
                                            source_layer_depth=layer_depth, threads=args.threads)
  finally:
    progress.close()
  seconds = time.monotonic() - start
  with open(args.output, 'wb') as out:
    out.write(data)
  print(_report('compressed', stats, seconds))
  print(f'wrote {args.output}')


def run_decompress(args):
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  _check_output(args)
  files = model_files.read_model_files(args.model)
  try:
    with open(args.input, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise UserError(describe(args.input, f'cannot read ({e.strerror})')) from None
  codec.read_header(data, args.input)  # a damaged file fails here, before any engine work
  _ready_engine(files)
  progress = _ProgressLine('decompress')
  start = time.monotonic()
  try:
    codes, stats, header = codec.decompress_with_stats(data, files, progress, source=args.input,
                                                       threads=args.threads)
  finally:
    progress.close()
  seconds = time.monotonic() - start
  kind = _write_output(args.output, codes, header, files.model_config['layer_depth'])
  print(_report('decompressed', stats, seconds))
  print(f'wrote {args.output} ({kind}); all {stats.samples} per-sample CRC32 checks passed')
