"""RealCompressionCheck: actually compress and decompress the eval split with the candidate model.

The Evaluator reports the model's theoretical code length; this component produces real bytes
with the codec (entropy_coder.codec) and proves they decode to the very same codes:

    Examples[eval] --codes--> compress (candidate model) --bytes--> decompress --> == codes ?
                                        \\--> real bits/bit, theory, zstd -19 / xz -9 baselines

Outputs:

* `compression` (standard `ModelEvaluation` artifact): `real_compression.json`, the compressed
  split `eval.nec`, and the numbers as custom properties (ML-Metadata; `entropy-coder metrics`
  shows them).
* `blessing` (standard `InfraBlessing` artifact, the Pusher's `infra_blessing` input): custom
  property `blessed` = 1 only when the round trip is exact AND the real payload is at most
  `max_real_over_theory` above the model's theoretical code length (0.02 = 2 %); else 0, with
  the reason in the custom property `reason` and in the report. TFX's Pusher pushes only when
  both its model blessing (the Evaluator's) and this blessing have `blessed` = 1
  (tfx/components/pusher/executor.py `CheckBlessing`). A marker file `INFRA_BLESSED` or
  `INFRA_NOT_BLESSED` names the decision, as TFX's InfraValidator does.

A failed round trip (decoded codes differ, or compress / decompress raise) or a payload over the
tolerance does NOT fail the execution: the pipeline continues, the Pusher skips the push, and the
run's summary says why. Only unreadable inputs (no split files, no model) fail it.

Two figures side by side: `theoretical_bits_per_bit` is the model's own code length of every bit
(TFMA's `code_length`), `real_bits_per_bit` the real file, whatever coded each layer: the model's
stream, or, where the model would cost more, adaptive counts or raw bits (codec/fallback.py;
`model_code_bits`, `adaptive_code_bits`, `raw_code_bits`, `fallback_fraction` say how much).

The tolerance applies to the range coder's payload, not to the file with its header: the
header (72 bytes, 24 per chunk, 4 per code for its CRC) is container overhead that depends on
how many codes one file holds, not on how well the coder realises the model (about 2 % of the
demo's file). `real_over_theory` (file / theory) is reported beside it.
"""
import json
import lzma
import os
import time

import numpy as np
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.push_gates import DEFAULT_MAX_REAL_OVER_THEORY

REPORT_FILE = 'real_compression.json'
COMPRESSED_FILE = 'eval.nec'
BLESSED_FILE = 'INFRA_BLESSED'  # the marker names of TFX's InfraValidator
NOT_BLESSED_FILE = 'INFRA_NOT_BLESSED'


def _split_files(examples_uri, split):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  split_dir = splits_lib.split_dir(examples_uri, split)
  files = sorted(tf.io.gfile.glob(os.path.join(split_dir, '*')))
  if not files:
    raise UserError(describe(split_dir, f'no "{split}" split files in the Examples artifact'))
  return files


def _error_text(error):
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__


def check_real_compression(examples_uri, model_uri, output_dir, split=splits_lib.EVAL_SPLIT,
                           max_samples=0, max_real_over_theory=DEFAULT_MAX_REAL_OVER_THEORY):
  """Codes of `split` -> compress + decompress with the model -> report dict (also on disk).

  The report's `blessed` is True only when the decoded codes equal the input and the real
  payload is at most `max_real_over_theory` (relative) above the theoretical code length;
  otherwise `reason` says why. Never raises for a bad round trip (only for unreadable inputs).
  """
  import zstandard  # pylint: disable=g-import-not-at-top
  from entropy_coder import codec, codes_format, model_files  # pylint: disable=g-import-not-at-top
  files = model_files.read_model_files(model_files.resolve_model_dir(model_uri))
  codes = []
  for _, code in codes_format.iter_tfrecord_codes(_split_files(examples_uri, split)):
    codes.append(code)
    if max_samples and len(codes) >= max_samples:
      break
  packed = b''.join(np.packbits(code.reshape(-1)).tobytes() for code in codes)
  bits = sum(code.size for code in codes)
  report = {
      'split': split,
      'sample_count': len(codes),
      'code_bits': bits,
      'model_fingerprint': files.fingerprint,
      'max_real_over_theory': float(max_real_over_theory),
      'zstd19_bits_per_bit': 8.0 * len(zstandard.ZstdCompressor(level=19).compress(packed)) / bits if bits else 0.0,
      'xz9_bits_per_bit': 8.0 * len(lzma.compress(packed, preset=9)) / bits if bits else 0.0,
  }
  data, reason = None, ''
  start = time.monotonic()
  try:
    data, stats = codec.compress_with_stats(codes, files)
  except Exception as e:  # pylint: disable=broad-except  (any failure = an unverified model)
    reason = f'compress raised {_error_text(e)}'
  else:
    report.update({
        'real_bits_per_bit': stats.bits_per_bit,
        'real_payload_bits_per_bit': stats.payload_bits_per_bit,
        'theoretical_bits_per_bit': stats.theoretical_bits_per_bit,
        'real_over_theory': (8.0 * stats.file_bytes / stats.theoretical_bits
                             if stats.theoretical_bits else 0.0),
        # The ideal code length of what the coders coded: the model's probabilities mixed with
        # the code's own statistics (format version 4, codec/mixing.py; below the model's
        # theoretical figure when the mixing learns) and the fallback layers' own costs.
        'coded_ideal_bits_per_bit': stats.coded_ideal_bits / bits if bits else 0.0,
        'payload_over_theory': stats.gap,  # over the ideal of the methods used (CodingStats.gap)
        'compressed_bytes': stats.file_bytes,
        # Which method coded how many bits (docs/FORMAT.md version 3: layers the model would
        # make bigger go to adaptive counts or raw bits; with the mixing of version 4 too,
        # real_bits_per_bit can be below theory).
        'model_code_bits': stats.model_code_bits,
        'adaptive_code_bits': stats.adaptive_code_bits,
        'raw_code_bits': stats.raw_code_bits,
        'fallback_fraction': stats.fallback_code_bits / bits if bits else 0.0,
        'encode_samples_per_s': len(codes) / max(time.monotonic() - start, 1e-9),
    })
    start = time.monotonic()
    try:
      restored = codec.decompress(data, files, source=COMPRESSED_FILE)
    except Exception as e:  # pylint: disable=broad-except
      reason = f'round trip FAILED: decompress raised {_error_text(e)}'
    else:
      report['decode_samples_per_s'] = len(codes) / max(time.monotonic() - start, 1e-9)
      differ = (len(codes) if len(restored) != len(codes) else
                sum(not np.array_equal(a, b) for a, b in zip(restored, codes)))
      if differ:
        reason = (f'round trip FAILED: {differ} of {len(codes)} decoded {split} codes differ '
                  'from the input')
  report['round_trip_ok'] = data is not None and not reason
  if not reason and not codes:
    reason = f'nothing verified: the "{split}" split holds no codes'
  if not reason and stats.gap > max_real_over_theory:
    reason = (f'real payload {100 * stats.gap:.2f} % above the ideal code length of its coders, more than '
              f'max_real_over_theory {max_real_over_theory:g} allows')
  report['blessed'] = not reason
  report['reason'] = reason

  os.makedirs(output_dir, exist_ok=True)
  if data is not None:
    with open(os.path.join(output_dir, COMPRESSED_FILE), 'wb') as f:
      f.write(data)
  with open(os.path.join(output_dir, REPORT_FILE), 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write('\n')
  return report


# TFX runs this as a pipeline component (Python-function component).
@component
def RealCompressionCheck(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    compression: OutputArtifact[standard_artifacts.ModelEvaluation],
    blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    split: Parameter[str] = splits_lib.EVAL_SPLIT,
    max_samples: Parameter[int] = 0,
    max_real_over_theory: Parameter[float] = DEFAULT_MAX_REAL_OVER_THEORY,
):
  """Compresses `split` of `examples` with `model` for real; blesses the push only if exact
  and within `max_real_over_theory` of the model's code length."""
  report = check_real_compression(examples.uri, model.uri, compression.uri, split, max_samples,
                                  max_real_over_theory)
  for name, value in report.items():
    if isinstance(value, bool):
      compression.set_int_custom_property(name, int(value))
    elif isinstance(value, int):
      compression.set_int_custom_property(name, value)
    elif isinstance(value, float):
      compression.set_float_custom_property(name, value)
    elif value is not None:
      compression.set_string_custom_property(name, str(value))
  write_blessing(blessing, report)


def write_blessing(blessing, report):
  """The InfraBlessing the Pusher reads: `blessed` 0/1, `reason`, and the marker file."""
  blessing.set_int_custom_property('blessed', int(report['blessed']))
  blessing.set_string_custom_property('reason', report['reason'])
  blessing.set_int_custom_property('has_model', 0)  # the Pusher pushes its `model` input
  os.makedirs(blessing.uri, exist_ok=True)
  marker = BLESSED_FILE if report['blessed'] else NOT_BLESSED_FILE
  with open(os.path.join(blessing.uri, marker), 'w', encoding='utf-8') as f:
    f.write((report['reason'] or 'round trip exact, payload within tolerance') + '\n')
