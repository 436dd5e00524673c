"""`entropy-coder encode-images`: pictures -> one `.npz` of binary codes per picture.

Every input and the encoder are checked before the first picture is coded; the coding is
entropy_coder.image_encoder.api, the file layout entropy_coder.image_encoder.files.
"""
import os
import sys


def register(subparsers):
  parser = subparsers.add_parser(
      'encode-images', help='code pictures into binary codes (.npz) with a trained image encoder',
      description='Codes each picture (gray; any size, padded to multiples of 16 by repeating '
      'its last row and column) with the encoder of --encoder into -o DIR/<name>.npz in the '
      "original's format, shape [iterations, 1, H/16, W/16, bits], and its size before padding "
      'into DIR/<name>.size.json. Deterministic: the same picture gives the same codes.')
  parser.add_argument('--encoder', required=True, metavar='DIR',
                      help='a trained encoder directory (entropy-coder train-encoder)')
  parser.add_argument('images', nargs='+', metavar='IMAGE',
                      help='picture files (PNG, JPEG, ...) or directories of them')
  parser.add_argument('-o', '--output-dir', required=True, metavar='DIR',
                      help='existing directory for the .npz files')
  parser.add_argument('--overwrite', action='store_true', help='replace existing .npz files')
  parser.set_defaults(func=run)


def run(args):
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder import output_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
  from entropy_coder.image_encoder import files  # pylint: disable=g-import-not-at-top
  paths = files.expand_inputs(args.images)
  output_dir = output_files.check_output_dir(args.output_dir, '-o')
  names = files.output_names(paths, '.npz')
  outputs = [os.path.join(output_dir, name) for name in names]
  for output in outputs:
    output_files.check_output_file(output, args.overwrite, probe=False)
  encoder = api.load_encoder(args.encoder)
  pictures = [files.read_gray(path) for path in paths]  # every picture checked first
  config = encoder.config
  for done, (path, gray, output) in enumerate(zip(paths, pictures, outputs), 1):
    encoded = api.encode(gray, encoder, path)
    with output_files.atomic_output(output, args.overwrite) as temp:
      with open(temp, 'wb') as f:
        codes_format.write_npz(f, encoded.code, config.bits_per_iteration)
    files.write_size(output, encoded.height, encoded.width)
    print(f'[{done}/{len(paths)}] {path} ({encoded.width}x{encoded.height}) -> {output}: '
          f'{config.bits_per_pixel():.4f} bits/pixel, PSNR '
          f'{api.psnr(gray, encoded.reconstructions[-1]):.2f} dB', file=sys.stderr, flush=True)
  print(f'encoded {len(paths)} pictures into {output_dir} ({config.iterations} iterations x '
        f'{config.bits_per_iteration} bits)')
  return 0
