"""`entropy-coder compress` / `decompress`: real files, real bytes, with the trained model.

    entropy-coder compress   --model DIR INPUT -o OUT          INPUT: .npz code or TFRecord file/glob
    entropy-coder decompress --model DIR OUT -o RESTORED       restores the input's format
    entropy-coder compress   --model DIR INPUT... -o OUTDIR/   one OUTDIR/<name>.nec per input file
    entropy-coder decompress --model DIR OUT... -o OUTDIR/     one OUTDIR/<name without .nec> each

One process does all the files, so the start-up (imports, loading the compiled engine: about a
second) is paid once, not once per image. An INPUT is a file, a glob (quoted, expanded here) or a
directory: compress takes the files directly in it except `*.nec`, decompress its `*.nec` files,
both in name order, hidden files left out. Several INPUTs, a directory, a decompress glob, a
compress glob with -o naming a directory, or -o ending in "/" make one output per input file,
into -o, which must be an existing directory; otherwise -o is the one output file (as before:
compress of a TFRecord glob writes all its codes into one file).

Every input and output is checked before any work: a file that is not codes (or not a compressed
file, or one from another model), two inputs with the same output name, an existing output
without --overwrite, a missing -o directory all stop the run with one line naming the file.
Each output is written atomically (entropy_coder.output_files): a failure leaves no partial file
(earlier outputs of a many-file run are complete and stay).

INPUT's format is told by its content (a zip archive is a .npz, a GZIP stream a GZIP TFRecord,
else TFRecord framing), never by its name. The compressed file records the input's format (.npz
with its layer_depth, or TFRecord plain or GZIP), so `decompress` writes the same kind of file
back. TFRecords are written in our packed tf.Example layout whatever the input layout was; the
codes are identical bit for bit.
"""
import dataclasses
import glob
import json
import os
import sys
import threading
import time

from entropy_coder.commands import common_arguments

COMPRESSED_SUFFIX = '.nec'


# What `compress --format-version` may write: codec.bitstream.LAYOUT_VERSIONS, restated here
# because importing entropy_coder.codec loads numba and the engine, which `--help` must not
# (the reader also reads version 1).
WRITABLE_VERSIONS = (2, 3, 4)


def register(subparsers):
  compress = _add_coding_parser(
      subparsers, 'compress', run_compress,
      help='losslessly compress codes with a trained model (real bitstream)',
      description='Compresses a .npz code or a TFRecord file/glob of codes into one file, or '
      'many inputs (files, globs, directories) into one file each in -o DIR/; prints the sizes, '
      'bits per bit, the ratio and the gap to the theoretical code length.',
      input_help='.npz code (original format) or TFRecord file/glob of codes; several '
      'files, globs or directories: one compressed file each (needs -o DIR)',
      output_help='compressed file to write; with several inputs an existing directory '
      '(DIR/<input name>.nec each; end it with / for a single input)')
  compress.add_argument(
      '--format-version', type=int, choices=WRITABLE_VERSIONS, default=None,
      help='container to write (default: the newest, 4: the model\'s probability mixed with '
      'what the code teaches, smallest; 3: the model\'s own stream with the never-expand '
      'fallback, 1.2-2.4x faster to decode, readable by builds before version 4; 2: the '
      'model\'s stream alone). docs/FORMAT.md')
  _add_coding_parser(
      subparsers, 'decompress', run_decompress,
      help='restore codes from a file written by compress',
      description='Decodes compressed files with the model that wrote them and writes the codes '
      'back in the input\'s format (.npz or TFRecord): one file to -o FILE, or many (files, globs, '
      'directories of .nec files) to one file each in -o DIR/.',
      input_help='compressed file written by `entropy-coder compress`; several files, '
      'globs or directories: one restored file each (needs -o DIR)',
      output_help='restored .npz or TFRecord file; with several inputs an existing '
      'directory (DIR/<input name without .nec> each; end it with / for a single input)')


def _add_coding_parser(subparsers, name, func, help, description, input_help, output_help):  # pylint: disable=redefined-builtin
  """compress and decompress take the same arguments: a model, inputs, -o, --overwrite, --threads."""
  parser = subparsers.add_parser(name, help=help, description=description)
  common_arguments.add_model_argument(parser)
  parser.add_argument('input', nargs='+', help=input_help)
  parser.add_argument('-o', '--output', required=True, help=output_help)
  parser.add_argument('--overwrite', action='store_true', help='replace existing output files')
  parser.add_argument('--threads', type=int, default=None,
                      help='worker threads (default: all cores); the output does not depend on it')
  parser.add_argument('--json', action='store_true',
                      help='print the sizes as JSON: the coded figure (the real file, fallback '
                      'layers included) beside the model\'s theoretical figure')
  parser.set_defaults(func=func)
  return parser


class _ProgressLine:
  """One self-overwriting stderr line, shown only once a run has taken more than a second."""

  def __init__(self, label):
    self._label, self._start, self._last, self._shown = label, time.monotonic(), 0.0, False

  def _due(self, final):
    now = time.monotonic()
    if now - self._start < 1.0 or (now - self._last < 0.25 and not final):
      return None
    self._last, self._shown = now, True
    return max(now - self._start, 1e-9)

  def __call__(self, done, total):
    seconds = self._due(done >= total)
    if seconds is not None:
      print(f'\r{self._label}: {100.0 * done / max(total, 1):5.1f}% of {total:,} bits '
            f'({done / seconds / 1e6:.2f} Mbit/s)', end='', file=sys.stderr, flush=True)

  def files(self, done, total, name):
    """Per-file progress of a many-file run: files done, the rate, the file just finished."""
    seconds = self._due(done >= total)
    if seconds is not None:
      print(f'\r{self._label}: {done:,} / {total:,} files ({100.0 * done / max(total, 1):5.1f}%, '
            f'{done / seconds:.1f} files/s) {os.path.basename(name)}\x1b[K', end='',
            file=sys.stderr, flush=True)

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


def _check_fit(codes, files, layer_depth=0):
  """Every code fits the model (the codec's own check, trainer.config.code_layers), named by
  its file and record, before the engine starts; a .npz's own `layer_depth` that is not the
  model's is a warning (codes_format.layer_depth_warning)."""
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder.trainer.config import model_config_from_dict  # pylint: disable=g-import-not-at-top
  config = model_config_from_dict(files.model_config, files.path)
  for source, code in codes:
    config.coded_depth(code.shape[-1], source, f'the model at {files.path}')
  warning = codes_format.layer_depth_warning(codes[0][0] if codes else '<input>', layer_depth,
                                             config.layer_depth, f'the model at {files.path}')
  if warning:
    print(warning, file=sys.stderr, flush=True)


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


def _show(args, verb, stats, seconds, files=None, wrote=None):
  """Prints the run's report: JSON with --json, else text, then `wrote` (text lines)."""
  if args.json:
    print(json.dumps(_report_fields(verb, stats, seconds, files), indent=2, sort_keys=True))
  else:
    print(_report(verb, stats, seconds, files))
    print('\n'.join(wrote if wrote is not None else [f'wrote {args.output}']))


def _report_fields(verb, stats, seconds, files=None):
  """The report as named numbers: `coded_bits_per_bit` is the real file (every method, header
  included), `model_theoretical_bits_per_bit` the model's own code length of every bit (what
  TFMA's code_length reports), 0 when not computed."""
  fields = {name: getattr(stats, name) for name in (
      'samples', 'code_bits', 'file_bytes', 'payload_bytes', 'theoretical_bits',
      'model_code_bits', 'adaptive_code_bits', 'raw_code_bits')}
  fields.update(
      verb=verb, seconds=seconds, files=files if files is not None else 1,
      coded_bits_per_bit=stats.bits_per_bit, coded_payload_bits_per_bit=stats.payload_bits_per_bit,
      model_theoretical_bits_per_bit=stats.theoretical_bits_per_bit)
  return fields


def _methods_line(stats):
  """Which share of the bits each method coded (version 3 fallback, docs/FORMAT.md)."""
  total = max(stats.code_bits, 1)
  return (f'coded by     model {100.0 * stats.model_code_bits / total:.1f}%, adaptive '
          f'{100.0 * stats.adaptive_code_bits / total:.1f}%, raw '
          f'{100.0 * stats.raw_code_bits / total:.1f}% of the bits')


def _report(verb, stats, seconds, files=None):
  packed = stats.code_bits / 8.0
  what = (f'{files:,} files ({stats.samples:,} codes)' if files is not None
          else f'{stats.samples} code(s)')
  rate = (f'{files / max(seconds, 1e-9):.1f} files/s, ' if files is not None else '')
  lines = [
      f'{verb} {what}, {stats.code_bits:,} bits, in {seconds:.2f} s '
      f'({rate}{stats.samples / max(seconds, 1e-9):.1f} codes/s)',
      f'packed bits  {packed:,.0f} bytes (1 bit per bit)',
      f'compressed   {stats.file_bytes:,} bytes = {stats.bits_per_bit:.5f} bits/bit coded, '
      f'ratio {packed / max(stats.file_bytes, 1):.4f}x (payload {stats.payload_bytes:,} bytes = '
      f'{stats.payload_bits_per_bit:.5f} bits/bit)',
      _methods_line(stats),
  ]
  if stats.theoretical_bits:
    lines.append(f'model theory {stats.theoretical_bits / 8:,.1f} bytes = '
                 f'{stats.theoretical_bits_per_bit:.5f} bits/bit (the model alone, every bit); '
                 f'payload gap {100.0 * stats.gap:+.3f}%')
  return '\n'.join(lines)


def _total(all_stats):
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  fields = [field.name for field in dataclasses.fields(codec.CodingStats)]
  return codec.CodingStats(**{name: sum(getattr(s, name) for s in all_stats) for name in fields})


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


def _run_engine(files, label, work):
  """Readies the engine, then runs `work(progress)` under a progress line labelled `label`:
  -> (what work returned, its seconds; readying the engine not counted)."""
  _ready_engine(files)
  progress = _ProgressLine(label)
  start = time.monotonic()
  try:
    result = work(progress)
  finally:
    progress.close()
  return result, time.monotonic() - start


def _each_file(plan, directory, progress, write):
  """A many-file run's outputs in `plan` order: `write(n, path, output)` for each n-th (input,
  output) pair -> the list of what it returned; a UserError says how many files were written
  into `directory` before it (those stay complete)."""
  from entropy_coder.errors import UserError  # pylint: disable=g-import-not-at-top
  written = []
  for done, (path, output) in enumerate(plan):
    try:
      written.append(write(done, path, output))
    except UserError as e:
      raise UserError(f'{e} ({_written(done, len(plan), directory)} before it)') from None
    progress.files(done + 1, len(plan), path)
  return written


def _check_threads(args):
  from entropy_coder.errors import UserError  # pylint: disable=g-import-not-at-top
  if args.threads is not None and args.threads < 1:
    raise UserError(f'--threads must be at least 1, got {args.threads}')


# ---- many inputs, one output each ---------------------------------------------------------------

def _is_pattern(path):
  return any(ch in path for ch in '*?[') and not os.path.exists(path)


def _one_output_each(args, patterns_are_many):
  """Whether this command line writes one output per input file into the -o directory."""
  if len(args.input) > 1 or args.output.endswith(('/', os.sep)):
    return True
  only = args.input[0]
  return os.path.isdir(only) or (_is_pattern(only)
                                 and (patterns_are_many or os.path.isdir(args.output)))


def _expand_inputs(inputs, in_directory, what):
  """INPUT arguments -> input files: a directory gives the files directly in it that
  `in_directory(name)` accepts (hidden ones left out), a glob its matches, in name order."""
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  paths = []
  for arg in inputs:
    if os.path.isdir(arg):
      try:
        names = sorted(os.listdir(arg))
      except OSError as e:
        raise UserError(describe(arg, f'cannot list the directory ({e.strerror})')) from None
      found = [os.path.join(arg, name) for name in names if not name.startswith('.')
               and in_directory(name) and os.path.isfile(os.path.join(arg, name))]
      if not found:
        raise UserError(describe(arg, f'no {what} in this directory'))
      paths += found
    elif _is_pattern(arg):
      found = sorted(glob.glob(arg))
      if not found:
        raise UserError(describe(arg, 'no files match'))
      for path in found:
        if os.path.isdir(path):
          raise UserError(describe(path, f'is a directory, matched by the pattern {arg}'))
      paths += found
    else:
      paths.append(arg)
  return paths


def _plan_outputs(args, inputs, name_of):
  """-> [(input, output path)], every output checked: -o an existing writable directory, no two
  inputs with one output name, no output over an input, none existing without --overwrite."""
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  from entropy_coder.output_files import check_output_dir, check_output_file  # pylint: disable=g-import-not-at-top
  count = len(inputs)
  directory = check_output_dir(
      args.output, '-o', f'with {count:,} input files -o must be an existing directory, which '
      'receives one output per input' if count != 1 else 'the output directory must exist')
  plan, taken = [], {}
  sources = {os.path.realpath(path) for path in inputs}
  for path in inputs:
    output = os.path.join(args.output, name_of(path))  # as the user wrote it, for the messages
    key = os.path.join(directory, name_of(path))
    if key in taken:
      raise UserError(describe(path, f'has the same output name as {taken[key]}: both would be '
                               f'written to {output}'))
    taken[key] = path
    if os.path.realpath(key) in sources:
      raise UserError(describe(path, f'would be restored over the input {output}'))
    check_output_file(output, args.overwrite, probe=False)
    plan.append((path, output))
  return plan


def _check_not_a_directory(output):
  """One input and -o naming a directory without a trailing "/": refused, not guessed."""
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  if os.path.isdir(output):
    raise UserError(describe(f'-o {output}', 'is a directory; give a file name, or write '
                             f'{os.path.join(output, "")} to put one output per input in it'))


def _compressed_name(path):
  return os.path.basename(path) + COMPRESSED_SUFFIX


def _restored_name(path):
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  base = os.path.basename(path)
  if not base.endswith(COMPRESSED_SUFFIX) or base == COMPRESSED_SUFFIX:
    raise UserError(describe(path, f'the name does not end in {COMPRESSED_SUFFIX}, so it gives no '
                             'output name; decompress it on its own with -o FILE'))
  return base[:-len(COMPRESSED_SUFFIX)]


def _written(done, total, directory):
  return f'{done:,} of {total:,} files written into {directory}'


# ---- compress -----------------------------------------------------------------------------------

def _run(args, patterns_are_many, run_each, code_one):
  """Both commands' frame: --threads checked, then either a many-file run (`run_each(args)`) or
  the one input to the one output -o. That output is checked (not a directory; writable, its
  temporary file created) before any work and replaces -o only once complete; in between the
  model is read and `code_one(args, path, files, temp)` does the work into `temp` and returns
  what prints the report, which runs once -o is in place."""
  _check_threads(args)
  if _one_output_each(args, patterns_are_many):
    return run_each(args)
  from entropy_coder import model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.output_files import atomic_output  # pylint: disable=g-import-not-at-top
  (path,) = args.input
  _check_not_a_directory(args.output)
  with atomic_output(args.output, args.overwrite, '-o') as temp:
    report = code_one(args, path, model_files.read_model_files(args.model), temp)
  report()
  return None


def run_compress(args):
  return _run(args, False, _compress_each, _compress_one)


def _compress_one(args, path, files, temp):
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  sourced, fmt, layer_depth = _read_input(path)
  _check_fit(sourced, files, layer_depth)
  codes = [code for _, code in sourced]
  (data, stats), seconds = _run_engine(files, 'compress', lambda progress: (
      codec.compress_with_stats(codes, files, progress, source_format=fmt,
                                source_layer_depth=layer_depth, threads=args.threads,
                                format_version=args.format_version)))
  with open(temp, 'wb') as out:
    out.write(data)
  return lambda: _show(args, 'compressed', stats, seconds)


@dataclasses.dataclass(frozen=True)
class _PackedCodes:
  """One input file's codes, kept packed (1 bit per bit) between the checks and the work."""
  shapes: tuple
  bits: tuple
  source_format: int
  layer_depth: int

  def codes(self):
    import numpy as np  # pylint: disable=g-import-not-at-top
    return [np.unpackbits(np.frombuffer(bits, np.uint8), count=int(np.prod(shape))).reshape(shape)
            for shape, bits in zip(self.shapes, self.bits)]


def _compress_each(args):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from entropy_coder import codec, model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  from entropy_coder.output_files import atomic_output  # pylint: disable=g-import-not-at-top
  inputs = _expand_inputs(args.input, lambda name: not name.endswith(COMPRESSED_SUFFIX),
                          f'files (other than {COMPRESSED_SUFFIX})')
  plan = _plan_outputs(args, inputs, _compressed_name)
  files = model_files.read_model_files(args.model)
  checked = []
  for path, _ in plan:  # every input read and checked against the model before any work
    sourced, fmt, layer_depth = _read_input(path)
    _check_fit(sourced, files, layer_depth)
    checked.append(_PackedCodes(tuple(code.shape for _, code in sourced),
                                tuple(np.packbits(code.reshape(-1)).tobytes() for _, code in sourced),
                                fmt, layer_depth))
  directory = args.output

  def compress_all(progress):
    # One-code files of equal shape share engine batches (codec.compress_each); each file's
    # bytes are those of compressing it alone.
    results = codec.compress_each(((packed.codes(), packed.source_format, packed.layer_depth)
                                   for packed in checked), files, threads=args.threads,
                                  format_version=args.format_version)

    def write(_, path, output):
      try:
        data, stats = next(results)
      except UserError as e:
        raise UserError(describe(path, str(e))) from None
      with atomic_output(output, args.overwrite) as temp:
        with open(temp, 'wb') as out:
          out.write(data)
      return stats
    return _each_file(plan, directory, progress, write)

  all_stats, seconds = _run_engine(files, 'compress', compress_all)
  total = _total(all_stats)
  _show(args, 'compressed', total, seconds, len(plan), [
      f'container    {total.file_bytes - total.payload_bytes:,} bytes beside the payloads '
      f'({(total.file_bytes - total.payload_bytes) / len(plan):.1f} per file)',
      f'wrote {len(plan):,} files into {directory}'])


# ---- decompress ---------------------------------------------------------------------------------

def _read_compressed(path):
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except IsADirectoryError:
    raise UserError(describe(path, 'is a directory; expected a compressed file')) from None
  except OSError as e:
    raise UserError(describe(path, f'cannot read ({e.strerror})')) from None
  return data, codec.read_header(data, path)  # a damaged file fails here, before any work


def run_decompress(args):
  return _run(args, True, _decompress_each, _decompress_one)


def _decompress_one(args, path, files, temp):
  from entropy_coder import codec  # pylint: disable=g-import-not-at-top
  data, header = _read_compressed(path)
  codec.check_model(header, files, path)
  fmt = _output_format(args.output, header)
  (codes, stats, header), seconds = _run_engine(files, 'decompress', lambda progress: (
      codec.decompress_with_stats(data, files, progress, source=path, threads=args.threads)))
  kind = _write_output(temp, codes, fmt,
                       header.source_layer_depth or files.model_config['layer_depth'])
  return lambda: _show(args, 'decompressed', stats, seconds, wrote=[
      f'wrote {args.output} ({kind}); all {header.crc_checks} CRC32 check(s) passed'])


def _decompress_each(args):
  from entropy_coder import codec, model_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.output_files import atomic_output  # pylint: disable=g-import-not-at-top
  inputs = _expand_inputs(args.input, lambda name: name.endswith(COMPRESSED_SUFFIX),
                          f'{COMPRESSED_SUFFIX} files')
  names = [_restored_name(path) for path in inputs]  # named before anything else is checked
  plan = _plan_outputs(args, inputs, dict(zip(inputs, names)).get)
  files = model_files.read_model_files(args.model)
  checked = []
  for path, output in plan:  # every file read, its header checked against the model
    data, header = _read_compressed(path)
    codec.check_model(header, files, path)
    checked.append((data, _output_format(output, header)))
  directory = args.output

  def decompress_all(progress):
    results = codec.decompress_each(((data, path) for (path, _), (data, _) in zip(plan, checked)),
                                    files, threads=args.threads)

    def write(n, _, output):
      codes, stats, header = next(results)
      with atomic_output(output, args.overwrite) as temp:
        _write_output(temp, codes, checked[n][1],
                      header.source_layer_depth or files.model_config['layer_depth'])
      return stats, header.crc_checks
    return _each_file(plan, directory, progress, write)

  written, seconds = _run_engine(files, 'decompress', decompress_all)
  checks = sum(crc_checks for _, crc_checks in written)
  _show(args, 'decompressed', _total([stats for stats, _ in written]), seconds, len(plan), [
      f'wrote {len(plan):,} files into {directory}; all {checks:,} CRC32 checks passed'])
