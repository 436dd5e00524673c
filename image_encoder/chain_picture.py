"""The chain in one picture: an original, its reconstructions after 1, 2, 4 and 8 iterations,
and the bits per pixel of each, as the image encoder writes them and after the entropy coder.

    python -m entropy_coder.image_encoder.chain_picture --encoder DIR --model DIR \\
        -o docs/images/image_chain.png [--picture grace_hopper | FILE]

The entropy-coded size of k iterations is a real `.nec` (entropy_coder.codec.compress) of the
code's first k iterations, so "after" counts every byte of the file, header included.
"""
import argparse
import json
import sys

import numpy as np

from entropy_coder.data_gen import sample_images
from entropy_coder.image_encoder import api
from entropy_coder.image_encoder import files

SHOWN_ITERATIONS = (1, 2, 4, 8)


def chain(gray, encoder, model_files, shown=SHOWN_ITERATIONS):
  """-> [{'iterations', 'psnr_db', 'bpp_codes', 'bpp_entropy_coded', 'picture'}] for each
  shown iteration count (at most the encoder's)."""
  from entropy_coder import codec  # pylint: disable=import-outside-toplevel
  encoder = api.load_encoder(encoder)
  encoded = api.encode(gray, encoder)
  bits = encoder.config.bits_per_iteration
  pixels = gray.shape[0] * gray.shape[1]
  rows = []
  for k in shown:
    if k > encoder.config.iterations:
      continue
    code = np.ascontiguousarray(encoded.code[:, :, :k * bits])
    data = codec.compress([code], model_files)
    rows.append({'iterations': k,
                 'psnr_db': api.psnr(gray, encoded.reconstructions[k - 1]),
                 'bpp_codes': code.size / pixels,
                 'bpp_entropy_coded': 8 * len(data) / pixels,
                 'picture': encoded.reconstructions[k - 1]})
  return rows


def draw(gray, rows, output):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, axes = plt.subplots(1, len(rows) + 1, figsize=(3.2 * (len(rows) + 1), 3.9))
  panels = [(gray, 'original\n8 bits/pixel')] + [
      (row['picture'], f'{row["iterations"]} iteration{"s" if row["iterations"] > 1 else ""}: '
       f'{row["psnr_db"]:.1f} dB\ncodes {row["bpp_codes"]:.3f} bpp, '
       f'coded {row["bpp_entropy_coded"]:.3f} bpp') for row in rows]
  for axis, (picture, title) in zip(axes, panels):
    axis.imshow(picture, cmap='gray', vmin=0, vmax=255)
    axis.set_title(title, fontsize=9)
    axis.axis('off')
  figure.tight_layout()
  figure.savefig(output, dpi=72, bbox_inches='tight')
  plt.close(figure)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--encoder', required=True)
  parser.add_argument('--model', required=True, help='entropy-coder model (pushed or exported)')
  parser.add_argument('--picture', default='grace_hopper',
                      help='a packaged picture name or an image file (default grace_hopper)')
  parser.add_argument('-o', '--output', required=True)
  args = parser.parse_args(argv)
  from entropy_coder import model_files  # pylint: disable=import-outside-toplevel
  if args.picture in sample_images.PACKAGED_NAMES:
    gray = sample_images.gray(sample_images.packaged_photos((args.picture,))[0].pixels)
  else:
    gray = files.read_gray(args.picture)
  rows = chain(gray, args.encoder, model_files.read_model_files(args.model))
  draw(gray, rows, args.output)
  print(json.dumps([{k: v for k, v in row.items() if k != 'picture'} for row in rows], indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
