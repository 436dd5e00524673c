"""`entropy-coder code-length`: the theoretical code length of codes under a trained model.

What the original's `entropy_coder_single.py` printed as "Additional compression ratio" is the
mean -log2 p(bit), a code length in bits per bit; the compression ratio is its inverse. The
figures come from entropy_coder.trainer.input_code_length; this module only parses the
arguments, prints the report and draws the plot.
"""
import os

from entropy_coder import plotting
from entropy_coder.commands import common_arguments


def register(subparsers):
  parser = subparsers.add_parser(
      'code-length', help='code length (bits/bit) and compression ratio of codes under a model',
      description='Prints total bits, bits per bit, the compression ratio (1 / bits per bit) and a '
      'per-layer table for a .npz code or a TFRecord file of codes.')
  common_arguments.add_model_argument(parser)
  parser.add_argument('--input', required=True, help='.npz code (original format) or TFRecord file/glob of codes')
  parser.add_argument('--plot', help='write a PNG of the per-layer code length')
  parser.add_argument('--json', action='store_true', help='print the result as JSON')
  parser.set_defaults(func=run)


def run(args):
  import json  # pylint: disable=g-import-not-at-top
  common_arguments.check_plot(args)
  from entropy_coder.trainer import input_code_length  # pylint: disable=g-import-not-at-top
  result = input_code_length.code_length_of_input(args.model, args.input)
  common_arguments.show(args, lambda: json.dumps(result, indent=2), lambda: format_report(result),
                        lambda path: plot_per_layer(result, path), 'plot written to')


def format_report(result):
  lines = [
      f'model        {result["model"]}',
      f'input        {result["input"]} ({result["samples"]} code(s), {result["coded_bits"]} coded bits)',
      f'code length  {result["total_bits"]:.1f} bits = {result["bits_per_bit"]:.5f} bits/bit '
      '(pooled: total bits / total code bits)',
      f'per code     {result["mean_code_bits_per_bit"]:.5f} bits/bit (mean over the '
      f'{result["samples"]} code(s) of {result["shapes"]} shape(s), each code weighing the same)',
      f'compression  {result["compression_ratio"]:.4f}x (1 / bits per bit)',
      '',
      'layer  bits/bit  bits',
  ]
  for row in result['per_layer']:
    lines.append(f'{row["layer"]:>5}  {row["bits_per_bit"]:.5f}  {row["bits"]:.1f}')
  return '\n'.join(lines)


def plot_per_layer(result, path):
  """Bar chart of per-layer bits/bit, with the overall mean as a line."""
  plt = plotting.pyplot()
  layers = [row['layer'] for row in result['per_layer']]
  values = [row['bits_per_bit'] for row in result['per_layer']]
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.bar(layers, values, color='tab:blue', label='per layer')
  ax.axhline(result['bits_per_bit'], color='tab:red', linestyle='--',
             label=f'all layers {result["bits_per_bit"]:.4f}')
  ax.set_xlabel('layer (encoder iteration)')
  ax.set_ylabel('code length (bits/bit)')
  ax.set_xticks(layers)
  ax.set_ylim(0, max(1.05, max(values) * 1.05))
  ax.set_title(os.path.basename(result['input']))
  ax.legend(loc='lower right')
  plotting.save_figure(fig, path)
