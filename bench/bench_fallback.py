"""What the version-3 fallback gains (docs/FORMAT.md "Version 3"): real one-code-per-file sizes in
bits per bit with the reference model, per option, on the same codes in the same run.

Options: `model` (version 2: every layer in the model's stream), `model+raw`, `model+adaptive`,
`all` (version 3 as written: the cheapest of the three per layer), beside the model's theoretical
figure, each code's closed-form order-0 KT cost per channel, xz -9 of the packed code and raw.

Codes: the reference fixture's 8 held-out samples (tests/data/reference/samples.npz, what the
model was trained for), synthetic codes of its training source, and codes it has never seen:
fair noise, and "encoder-like" noise, ~52 % ones with a bias per channel (p_c drawn around 0.52,
spread 0.1), the kind of codes [Real codes] §5 is about.

    .venv/bin/python bench/bench_fallback.py [--count 8] [--seed 0]
"""
import argparse
import lzma
import math
import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests'))

from helpers import REFERENCE_DIR, reference_model  # noqa: E402  pylint: disable=wrong-import-position
from entropy_coder import codec  # noqa: E402  pylint: disable=wrong-import-position
from entropy_coder.codec import fallback  # noqa: E402  pylint: disable=wrong-import-position
from entropy_coder.codec.bitstream import METHOD_ADAPTIVE, METHOD_MODEL, METHOD_RAW  # noqa: E402  pylint: disable=wrong-import-position
from entropy_coder.data_gen import synthetic  # noqa: E402  pylint: disable=wrong-import-position

OPTIONS = {
    'model': None,  # format_version 2
    'model+raw': ((METHOD_MODEL,), (METHOD_RAW,), (METHOD_MODEL, METHOD_RAW)),
    'model+adaptive': ((METHOD_MODEL,), (METHOD_ADAPTIVE,), (METHOD_MODEL, METHOD_ADAPTIVE)),
    'all': fallback.CANDIDATE_SETS,
}


def kt_bits(code):
  flat = code.reshape(-1, code.shape[2])
  n = flat.shape[0]
  return sum(-(math.lgamma(n - n1 + 0.5) + math.lgamma(n1 + 0.5) - math.lgamma(n + 1)
               - math.log(math.pi)) / math.log(2) for n1 in flat.sum(axis=0))


def datasets(count, seed):
  rng = np.random.default_rng(seed)
  samples = np.load(os.path.join(REFERENCE_DIR, 'samples.npz'), allow_pickle=False)['codes']
  encoder_like = []
  for _ in range(count):
    p = np.clip(rng.normal(0.52, 0.1, 16), 0.02, 0.98)
    encoder_like.append((rng.random((32, 48, 16)) < p).astype(np.uint8))
  return {
      'reference samples 35x48x8': list(samples[:count]),
      'synthetic 35x48x8': list(synthetic.generate_codes(seed=seed + 1, indices_or_start=0,
                                                         count=count, shape=(35, 48, 8))),
      'encoder-like noise 32x48x16': encoder_like,
      'fair noise 32x48x16': [rng.integers(0, 2, (32, 48, 16)).astype(np.uint8)
                              for _ in range(count)],
  }


def measure(codes, model):
  bits = sum(code.size for code in codes)
  row = {}
  theory = 0.0
  for name, candidates in OPTIONS.items():
    size = 0
    saved = fallback.CANDIDATE_SETS
    try:
      if candidates is not None:
        fallback.CANDIDATE_SETS = candidates
      for code in codes:
        data, stats = codec.compress_with_stats([code], model, threads=1,
                                                format_version=2 if candidates is None else 3)
        size += len(data)
        theory += stats.theoretical_bits if name == 'model' else 0.0
        assert np.array_equal(codec.decompress(data, model, threads=1)[0], code)
    finally:
      fallback.CANDIDATE_SETS = saved
    row[name] = 8.0 * size / bits
  row['theory'] = theory / bits
  row['KT order-0'] = sum(kt_bits(code) for code in codes) / bits
  row['xz -9'] = sum(8 * len(lzma.compress(np.packbits(c).tobytes(), preset=9)) for c in codes) / bits
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--count', type=int, default=8, help='codes per kind (one file each)')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  model = reference_model(tempfile.mkdtemp(prefix='bench_fallback_'))
  columns = ['theory', 'model', 'model+raw', 'model+adaptive', 'all', 'KT order-0', 'xz -9']
  print('| codes (one file each) | ' + ' | '.join(columns) + ' |')
  print('|---|' + '---:|' * len(columns))
  for name, codes in datasets(args.count, args.seed).items():
    row = measure(codes, model)
    print(f'| {name} | ' + ' | '.join(f'{row[c]:.4f}' for c in columns) + ' |', flush=True)


if __name__ == '__main__':
  main()
