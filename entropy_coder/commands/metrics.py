"""`entropy-coder metrics [PIPELINE_ROOT]`: the latest evaluation of a pipeline run, as a table.

Found through ML-Metadata (entropy_coder.pipeline.inspect_runs): overall and per-layer code
length, blessed or not and why, the baseline model's figures when there was one, the real
round trip's verdict (the Pusher requires it too), and where the model was pushed or why not.
`--json` prints the same for scripts; `--plot` draws the per-layer code length.
"""
import json
import math
import os

from entropy_coder import plotting
from entropy_coder.commands import common_arguments
from entropy_coder.errors import UserError, describe
from entropy_coder.pipeline import configs  # light: no TF, Beam or TFX at its top level


def register(subparsers):
  parser = subparsers.add_parser(
      'metrics', help='show the latest evaluation (code length, blessing) of a pipeline root',
      description='Reads the ML-Metadata store of a local pipeline root and prints the '
      'latest Evaluator run: code length overall and per layer in bits per bit, blessed or '
      'not, and the comparison with the baseline (latest blessed) model.')
  parser.add_argument('pipeline_root', nargs='?', default=configs.DEFAULT_PIPELINE_ROOT,
                      help='pipeline root of a local run '
                      f'(default {configs.DEFAULT_PIPELINE_ROOT})')
  parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
  parser.add_argument('--plot', metavar='PNG', help='also draw per-layer code length into PNG')
  parser.set_defaults(func=run)


def run(args):
  import logging  # pylint: disable=g-import-not-at-top
  from entropy_coder.pipeline import inspect_runs  # pylint: disable=g-import-not-at-top
  logging.getLogger('tensorflow').setLevel(logging.ERROR)  # TFMA's reader warns on every load
  common_arguments.check_plot(args)
  _check_store_file(args.pipeline_root)
  evaluation = inspect_runs.latest_evaluation(args.pipeline_root)
  common_arguments.show(
      args, lambda: json.dumps(evaluation.to_json(), indent=2, sort_keys=True, default=_json_number),
      lambda: format_table(evaluation), lambda path: plot_layers(evaluation, path),
      'per-layer plot:')
  return 0


def _check_store_file(root):
  """A metadata.sqlite that is not an SQLite database is one line, not ml_metadata's traceback."""
  path = os.path.join(root, configs.METADATA_FILENAME)
  if not os.path.isfile(path):
    return  # inspect_runs names a missing store
  with open(path, 'rb') as f:
    head = f.read(16)
  if head != b'SQLite format 3\0':
    raise UserError(describe(path, 'is empty, not an ML-Metadata store' if not head else
                             'is not an SQLite database (damaged, or not an ML-Metadata store)'))


def _json_number(value):
  return None if isinstance(value, float) and math.isnan(value) else value


def _number(value, digits=4):
  return '-' if value is None else f'{value:.{digits}f}'


def format_table(evaluation):
  """The human view: one row per metric, the baseline and the difference beside it."""
  candidate, baseline = evaluation.metrics, evaluation.baseline_metrics
  names = ['code_length', 'compression_ratio'] + evaluation.layer_names
  rows = [('metric', 'model', 'baseline', 'change')]
  for name in names:
    value = candidate.get(name)
    base = baseline.get(name) if baseline else None
    change = evaluation.changes.get(name)
    rows.append((name, _number(value), _number(base),
                 '-' if change is None else f'{change:+.4f}'))
  widths = [max(len(row[i]) for row in rows) for i in range(4)]
  lines = ['  '.join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
  lines.insert(1, '-' * len(lines[0]))
  status = {True: 'BLESSED', False: 'NOT BLESSED', None: 'no blessing recorded'}[evaluation.blessed]
  count = candidate.get('example_count')
  head = [f'evaluation  {evaluation.evaluation_uri}  ({evaluation.state.lower()}, execution '
          f'{evaluation.execution_id}' + (f', {int(count)} eval codes)' if count else ')'),
          f'model       {evaluation.model_uri}',
          f'baseline    {evaluation.baseline_model_uri or "none (first blessed model, or no Resolver)"}',
          'code length in bits per bit (lower is better); compression_ratio = 1 / code_length',
          '']
  tail = ['', f'{status}' + (': ' + '; '.join(evaluation.failed_checks)
                             if evaluation.failed_checks else '')]
  if evaluation.real_compression:
    tail.append('round trip  ' + format_round_trip(evaluation.real_compression))
  if evaluation.pushed_model_uri:
    tail.append(f'pushed to   {evaluation.pushed_model_uri}')
  elif evaluation.blessed is not None:
    tail.append(f'not pushed  ({why_not_pushed(evaluation)})')
  if evaluation.real_compression:
    tail.append(format_real_compression(evaluation.real_compression))
  floor = format_floor(evaluation)
  if floor:
    tail.append('floor       ' + floor)
  tail += format_training(evaluation)
  return '\n'.join(head + lines + tail)


def format_training(evaluation, width=12):
  """Lines on the Trainer's run (its train_summary.json), labels padded to `width`: figures,
  the exported step, and the overfitting note when the eval code length was far above the
  training one; [] if unknown."""
  summary = evaluation.training
  if not summary:
    return []
  train, eval_ = summary.get('train_code_length'), summary.get('eval_code_length')
  lines = ['training'.ljust(width) + f'step {summary.get("steps")}: train code length '
           f'{_number(train)}, eval {_number(eval_)} bits/bit; {summary.get("exported", "")}']
  if summary.get('overfitting_note'):
    lines.append('note'.ljust(width) + summary['overfitting_note'])
  return lines


def format_floor(evaluation):
  """How far the model is from the best code length its source allows, when that is known
  (synthetic codes: data_gen/floors.py on the same eval split); '' otherwise."""
  floor, code_length = evaluation.floor, evaluation.metrics.get('code_length')
  if not floor or code_length is None:
    return ''
  return (f'{floor["visibility"]:.4f} bits/bit: the best this model shape can reach on the eval '
          f'split (model {code_length - floor["visibility"]:+.4f} above it; source entropy '
          f'{floor["source_entropy"]:.4f})')


def format_round_trip(report):
  """The push gate of RealCompressionCheck: 'blessed: ...' or 'NOT BLESSED: <reason>'."""
  blessed = report.get('blessed')
  if blessed is None:
    return 'no blessing recorded (a run from before the round trip gated the push)'
  if not blessed:
    return 'NOT BLESSED: ' + (report.get('reason') or 'no reason recorded')
  gap, allowed = report.get('payload_over_theory'), report.get('max_real_over_theory')
  within = ('' if gap is None or allowed is None else
            f', payload {100 * gap:.2f} % above the model\'s code length (max {100 * allowed:.2f} %)')
  return f'blessed: exact on {report.get("sample_count", "?")} codes{within}'


def why_not_pushed(evaluation):
  """Which blessing stopped the push: the Evaluator's, the round trip's, or both."""
  reasons = []
  if evaluation.blessed is False:
    reasons.append('not blessed by the Evaluator')
  elif evaluation.blessed is None:
    reasons.append('no Evaluator blessing recorded')
  report = evaluation.real_compression
  if report and report.get('blessed') is False:
    reasons.append('round trip not blessed: ' + (report.get('reason') or 'no reason recorded'))
  return '; '.join(reasons) or 'the Pusher did not push'


def format_real_compression(report):
  """One line on the real bitstream of the eval split (RealCompressionCheck's report)."""
  def get(key):
    value = report.get(key)
    return '-' if value is None else f'{value:.4f}'
  if report.get('state') == 'FAILED':
    return 'real bitstream check FAILED (execution failed; its log has the error)'
  exact = 'exact' if report.get('round_trip_ok') else 'FAILED'
  return (f'real bitstream {get("real_bits_per_bit")} bits/bit with header '
          f'(payload {get("real_payload_bits_per_bit")}, model {get("theoretical_bits_per_bit")}; '
          f'zstd -19 {get("zstd19_bits_per_bit")}, xz -9 {get("xz9_bits_per_bit")}), '
          f'round trip {exact} on {report.get("sample_count", "?")} codes')


def plot_layers(evaluation, path):
  """Bar chart of code length per layer (bits per bit), the baseline's as a step line."""
  plt = plotting.pyplot()
  names = evaluation.layer_names
  if not names:
    raise UserError(describe(evaluation.evaluation_uri, 'the evaluation has no per-layer metrics'))
  layers = list(range(len(names)))
  fig, axis = plt.subplots(figsize=(max(4, 0.6 * len(names) + 2), 3.5))
  axis.bar(layers, [evaluation.metrics[n] for n in names], color='tab:blue', label='model')
  if evaluation.baseline_metrics:
    axis.step(layers, [evaluation.baseline_metrics.get(n, math.nan) for n in names],
              where='mid', color='tab:orange', label='baseline')
  axis.axhline(evaluation.metrics['code_length'], color='gray', linestyle='--',
               label=f'overall {evaluation.metrics["code_length"]:.4f}')
  axis.set_xticks(layers)
  axis.set_xlabel('layer')
  axis.set_ylabel('code length (bits per bit)')
  axis.legend(loc='lower right')
  plotting.save_figure(fig, path)
