"""`entropy-coder decode-images`: `.npz` codes -> the pictures the image encoder reconstructs.

The picture of a code is exactly the encoder's reconstruction when it wrote the code (the
decoder sees the same bits); it is cropped to the `<name>.size.json` beside the code if there
is one. A code with fewer iterations than the encoder has decodes with the first ones.
"""
import os
import sys


def register(subparsers):
  parser = subparsers.add_parser(
      'decode-images', help='reconstruct pictures (PNG) from image codes (.npz)',
      description='Decodes each .npz code (written by encode-images, or decompressed from a '
      '.nec) with the encoder of --encoder into -o DIR/<name>.png (gray), cropped to the size '
      'in <name>.size.json beside the code when present.')
  parser.add_argument('--encoder', required=True, metavar='DIR', help='the encoder directory')
  parser.add_argument('codes', nargs='+', metavar='CODE', help='.npz code files')
  parser.add_argument('-o', '--output-dir', required=True, metavar='DIR',
                      help='existing directory for the .png files')
  parser.add_argument('--iterations', type=int, metavar='K',
                      help='decode only the first K iterations (default all of the code\'s)')
  parser.add_argument('--overwrite', action='store_true', help='replace existing .png files')
  parser.set_defaults(func=run)


def run(args):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from entropy_coder import codes_format  # pylint: disable=g-import-not-at-top
  from entropy_coder import output_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  from entropy_coder.image_encoder import api  # pylint: disable=g-import-not-at-top
  from entropy_coder.image_encoder import files  # pylint: disable=g-import-not-at-top
  output_dir = output_files.check_output_dir(args.output_dir, '-o')
  outputs = [os.path.join(output_dir, name) for name in files.output_names(args.codes, '.png')]
  for output in outputs:
    output_files.check_output_file(output, args.overwrite, probe=False)
  encoder = api.load_encoder(args.encoder)
  bits = encoder.config.bits_per_iteration
  codes = []
  for path in args.codes:  # every code checked first
    code, layer_depth = codes_format.read_npz(path)
    if layer_depth != bits:
      raise UserError(describe(path, f'has {layer_depth} bits per iteration; the encoder '
                               f'{args.encoder} has {bits}'))
    api.check_code(code, encoder, path)
    if args.iterations is not None:
      if not 1 <= args.iterations <= code.shape[2] // bits:
        raise UserError(describe(path, f'--iterations {args.iterations}: the code has '
                                 f'{code.shape[2] // bits} iterations'))
      code = code[:, :, :args.iterations * bits]
    codes.append((code, files.read_size(path, code.shape[0], code.shape[1])))
  for done, (path, (code, (height, width)), output) in enumerate(zip(args.codes, codes, outputs), 1):
    picture = api.decode_code(code, encoder, height, width, path)
    with output_files.atomic_output(output, args.overwrite) as temp:
      Image.fromarray(picture, mode='L').save(temp, format='PNG')
    print(f'[{done}/{len(codes)}] {path} -> {output} ({width}x{height}, '
          f'{code.shape[2] // bits} iterations)', file=sys.stderr, flush=True)
  print(f'decoded {len(codes)} pictures into {output_dir}')
  return 0
