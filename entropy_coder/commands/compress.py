"""`entropy-coder compress` / `decompress`: real files, real bytes, with the trained model.

    entropy-coder compress   --model DIR INPUT -o OUT        INPUT: .npz code or TFRecord file/glob
    entropy-coder decompress --model DIR OUT -o RESTORED     restores the input's format

INPUT's format is told by its content (a zip archive is a .npz, a GZIP stream a GZIP TFRecord,
else TFRecord framing), never by its name. The output is checked before any work and written
atomically (entropy_coder.output_files): a failure leaves no file behind.

The compressed file records the input's format (.npz with its layer_depth, or TFRecord plain or
GZIP), so `decompress` writes the same kind of file back. TFRecords are written in our packed
tf.Example layout whatever the input layout was; the codes are identical bit for bit.
"""
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
  """INPUT -> ([(source, code)], source_format, source_layer_depth); format told by content."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.codec import bitstream  # pylint: disable=g-import-not-at-top
  codes, fmt, layer_depth = codes_format.read_codes(path)
  source_format = {codes_format.FORMAT_NPZ: bitstream.SOURCE_NPZ,
                   codes_format.FORMAT_TFRECORD: bitstream.SOURCE_TFRECORD,
                   codes_format.FORMAT_TFRECORD_GZIP: bitstream.SOURCE_TFRECORD_GZIP}[fmt]
  return codes, source_format, layer_depth


def _check_fit(codes, files):
  """Every code fits the model (the codec's own check, trainer.config.code_layers), named by
  its file and record, before the engine starts."""
  from entropy_coder.trainer.config import model_config_from_dict  # pylint: disable=g-import-not-at-top
  config = model_config_from_dict(files.model_config, files.path)
  for source, code in codes:
    config.coded_depth(code.shape[-1], source, f'the model at {files.path}')


def _output_format(name, header):
  """The format decompress writes: what the header records (API files: by the output's name).
  Checked against the header before any decoding work."""
  from entropy_coder.codec import bitstream  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  fmt = header.source_format
  if fmt == bitstream.SOURCE_API:  # written through the Python API: choose by extension
    fmt = bitstream.SOURCE_NPZ if name.endswith('.npz') else bitstream.SOURCE_TFRECORD_GZIP
  if fmt == bitstream.SOURCE_NPZ and header.sample_count != 1:
    raise UserError(describe(name, f'.npz holds one code but the file has {header.sample_count}; '
                             'choose a TFRecord output name'))
  return fmt


def _write_output(path, codes, fmt, layer_depth):
  """Writes restored codes to `path` (a temporary file: atomic_output renames it)."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.codec import bitstream  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import example_wire, tfrecord_files  # pylint: disable=g-import-not-at-top
  if fmt == bitstream.SOURCE_NPZ:
    with open(path, 'wb') as out:  # a file object: numpy appends no ".npz" to the name
      codes_format.write_npz(out, codes[0], layer_depth)
    return 'npz'
  records = (example_wire.encode_example(code) for code in codes)
  if fmt == bitstream.SOURCE_TFRECORD_GZIP:
    tfrecord_files.write_gzip_tfrecords(path, records)
    return 'GZIP TFRecord'
  tfrecord_files.write_tfrecords(path, records)
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


def _check_threads(args):
  from entropy_coder.errors import UserError  # pylint: disable=g-import-not-at-top
  if args.threads is not None and args.threads < 1:
    raise UserError(f'--threads must be at least 1, got {args.threads}')


def run_compress(args):
  from entropy_coder import codec, model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.output_files import atomic_output  # pylint: disable=g-import-not-at-top
  _check_threads(args)
  # The output is checked (and its temporary file created) before any work; it replaces
  # args.output only once complete.
  with atomic_output(args.output, args.overwrite, '-o') as temp:
    files = model_files.read_model_files(args.model)
    sourced, fmt, layer_depth = _read_input(args.input)
    _check_fit(sourced, files)
    codes = [code for _, code in sourced]
    _ready_engine(files)
    progress = _ProgressLine('compress')
    start = time.monotonic()
    try:
      data, stats = codec.compress_with_stats(codes, files, progress, source_format=fmt,
                                              source_layer_depth=layer_depth, threads=args.threads)
    finally:
      progress.close()
    seconds = time.monotonic() - start
    with open(temp, 'wb') as out:
      out.write(data)
  print(_report('compressed', stats, seconds))
  print(f'wrote {args.output}')


def run_decompress(args):
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.output_files import atomic_output  # pylint: disable=g-import-not-at-top
  _check_threads(args)
  with atomic_output(args.output, args.overwrite, '-o') as temp:
    files = model_files.read_model_files(args.model)
    try:
      with open(args.input, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise UserError(describe(args.input, f'cannot read ({e.strerror})')) from None
    header = codec.read_header(data, args.input)  # a damaged file fails here, before any work
    fmt = _output_format(args.output, header)
    _ready_engine(files)
    progress = _ProgressLine('decompress')
    start = time.monotonic()
    try:
      codes, stats, header = codec.decompress_with_stats(data, files, progress, source=args.input,
                                                         threads=args.threads)
    finally:
      progress.close()
    seconds = time.monotonic() - start
    kind = _write_output(temp, codes, fmt,
                         header.source_layer_depth or files.model_config['layer_depth'])
  print(_report('decompressed', stats, seconds))
  print(f'wrote {args.output} ({kind}); all {stats.samples} per-sample CRC32 checks passed')
