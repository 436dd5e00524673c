"""RealCompressionCheck: actually compress and decompress the eval split with the candidate model.

The Evaluator reports the model's theoretical code length; this component produces real bytes
with the codec (entropy_coder.codec) and proves they decode to the very same codes:

    Examples[eval] --codes--> compress (candidate model) --bytes--> decompress --> == codes ?
                                        \\--> real bits/bit, theory, zstd -19 / xz -9 baselines

Output `compression` (standard `ModelEvaluation` artifact) holds `real_compression.json`, the
compressed split `eval.nec`, and the numbers as custom properties (ML-Metadata; `entropy-coder
metrics` shows them). The run FAILS (RuntimeError) if the round trip is not exact.
"""
import json
import lzma
import os
import time

import numpy as np
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

REPORT_FILE = 'real_compression.json'
COMPRESSED_FILE = 'eval.nec'


def _split_files(examples_uri, split):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from entropy_coder.errors import UserError, describe  # pylint: disable=g-import-not-at-top
  split_dir = os.path.join(examples_uri, f'Split-{split}')
  files = sorted(tf.io.gfile.glob(os.path.join(split_dir, '*')))
  if not files:
    raise UserError(describe(split_dir, f'no "{split}" split files in the Examples artifact'))
  return files


def check_real_compression(examples_uri, model_uri, output_dir, split='eval', max_samples=0):
  """Codes of `split` -> compress + decompress with the model -> report dict (also on disk).

  Raises RuntimeError when the decoded codes differ from the input (the run must fail).
  """
  import zstandard  # pylint: disable=g-import-not-at-top
  from entropy_coder import codec, codes_format, model_files  # pylint: disable=g-import-not-at-top
  files = model_files.read_model_files(model_files.resolve_model_dir(model_uri))
  codes = []
  for _, code in codes_format.iter_tfrecord_codes(_split_files(examples_uri, split)):
    codes.append(code)
    if max_samples and len(codes) >= max_samples:
      break
  start = time.monotonic()
  data, stats = codec.compress_with_stats(codes, files)
  encode_s = time.monotonic() - start
  start = time.monotonic()
  restored = codec.decompress(data, files, source=COMPRESSED_FILE)
  decode_s = time.monotonic() - start
  round_trip_ok = len(restored) == len(codes) and all(
      np.array_equal(a, b) for a, b in zip(restored, codes))

  packed = b''.join(np.packbits(code.reshape(-1)).tobytes() for code in codes)
  bits = stats.code_bits
  report = {
      'split': split,
      'sample_count': len(codes),
      'code_bits': bits,
      'model_fingerprint': files.fingerprint,
      'real_bits_per_bit': stats.bits_per_bit,
      'real_payload_bits_per_bit': stats.payload_bits_per_bit,
      'theoretical_bits_per_bit': stats.theoretical_bits_per_bit,
      'real_over_theory': (8.0 * stats.file_bytes / stats.theoretical_bits
                           if stats.theoretical_bits else 0.0),
      'compressed_bytes': stats.file_bytes,
      'round_trip_ok': bool(round_trip_ok),
      'zstd19_bits_per_bit': 8.0 * len(zstandard.ZstdCompressor(level=19).compress(packed)) / bits if bits else 0.0,
      'xz9_bits_per_bit': 8.0 * len(lzma.compress(packed, preset=9)) / bits if bits else 0.0,
      'encode_samples_per_s': len(codes) / max(encode_s, 1e-9),
      'decode_samples_per_s': len(codes) / max(decode_s, 1e-9),
  }
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, COMPRESSED_FILE), 'wb') as f:
    f.write(data)
  with open(os.path.join(output_dir, REPORT_FILE), 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write('\n')
  if not round_trip_ok:
    raise RuntimeError(f'real compression round trip FAILED on {len(codes)} {split} codes: the '
                       'decoded codes differ from the input')
  return report


# TFX runs this as a pipeline component (Python-function component).
@component
def RealCompressionCheck(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    compression: OutputArtifact[standard_artifacts.ModelEvaluation],
    split: Parameter[str] = 'eval',
    max_samples: Parameter[int] = 0,
):
  """Compresses `split` of `examples` with `model` for real; fails if decoding is not exact."""
  report = check_real_compression(examples.uri, model.uri, compression.uri, split, max_samples)
  for name, value in report.items():
    if isinstance(value, bool):
      compression.set_int_custom_property(name, int(value))
    elif isinstance(value, int):
      compression.set_int_custom_property(name, value)
    elif isinstance(value, float):
      compression.set_float_custom_property(name, value)
    else:
      compression.set_string_custom_property(name, str(value))
