"""Which split (train, eval, ...) a sample index belongs to: a pure function of the index.

Splits are hash-free buckets: `bucket = index % total_buckets`, and buckets are handed out in
the order the splits are listed. With the default `(('train', 9), ('eval', 1))`, indices
0..8 are train, 9 is eval, 10..18 train, 19 eval, ... So a split's membership never depends on
how many samples there are or on how the work was bundled, and a dataset of N samples and one of
M > N samples with the same seed agree on their first N samples and on their splits.
"""
import re

import numpy as np

from entropy_coder import uris
from entropy_coder.errors import UserError

# The splits the Trainer and the Evaluator read (TFX's defaults); every split set holds both.
TRAIN_SPLIT, EVAL_SPLIT = 'train', 'eval'
DEFAULT_SPLITS = ((TRAIN_SPLIT, 9), (EVAL_SPLIT, 1))
# Where a split's records are: TFX's Examples layout, which our datasets share.
SPLIT_DIR_PREFIX = 'Split-'


def split_dir(root, name):
  """`root`/Split-`name`: the folder of split `name` of an Examples artifact or dataset."""
  return uris.join(root, SPLIT_DIR_PREFIX + name)

_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_-]*$')


def check_splits(splits):
  """Validates a sequence of (name, buckets) pairs; returns it as a tuple of tuples."""
  try:
    pairs = tuple((str(name), int(buckets)) for name, buckets in splits)
  except (TypeError, ValueError):
    raise UserError(f'splits must be (name, buckets) pairs, got {splits!r}') from None
  if not pairs:
    raise UserError('splits: at least one split is needed')
  names = [name for name, _ in pairs]
  for name, buckets in pairs:
    if not _NAME.match(name):
      raise UserError(f'splits: bad split name "{name}" (letters, digits, "_" and "-")')
    if buckets < 1:
      raise UserError(f'splits: split "{name}" needs a positive bucket count, got {buckets}')
  duplicates = sorted({name for name in names if names.count(name) > 1})
  if duplicates:
    raise UserError(f'splits: split names must be unique, repeated: {", ".join(duplicates)}')
  return pairs


def parse_splits(text):
  """'train:9,eval:1' -> (('train', 9), ('eval', 1))."""
  pairs = []
  for part in str(text).split(','):
    name, sep, buckets = part.strip().partition(':')
    if not sep or not buckets.strip().isdigit():
      raise UserError(f'splits: expected "name:buckets,..." like "train:9,eval:1", got "{text}"')
    pairs.append((name.strip(), int(buckets)))
  return check_splits(pairs)


def split_names(splits=DEFAULT_SPLITS):
  return tuple(name for name, _ in check_splits(splits))


def split_of(index, splits=DEFAULT_SPLITS):
  """The split of sample `index`."""
  splits = check_splits(splits)
  bucket = int(index) % sum(buckets for _, buckets in splits)
  for name, buckets in splits:
    if bucket < buckets:
      return name
    bucket -= buckets
  raise AssertionError('unreachable: bucket beyond the total')


def split_mask(indices, split, splits=DEFAULT_SPLITS):
  """Vectorised `split_of(i) == split` over an int array of indices."""
  splits = check_splits(splits)
  if split not in split_names(splits):
    raise UserError(f'splits: unknown split "{split}"; known: {", ".join(split_names(splits))}')
  total = sum(buckets for _, buckets in splits)
  low = 0
  for name, buckets in splits:
    if name == split:
      break
    low += buckets
  buckets = np.asarray(indices, dtype=np.uint64) % np.uint64(total)
  return (buckets >= np.uint64(low)) & (buckets < np.uint64(low + dict(splits)[split]))


def split_counts(count, splits=DEFAULT_SPLITS):
  """{split: number of indices in [0, count) that belong to it}, without enumerating them."""
  splits = check_splits(splits)
  total = sum(buckets for _, buckets in splits)
  full, rest = divmod(int(count), total)
  counts = {}
  low = 0
  for name, buckets in splits:
    counts[name] = full * buckets + max(0, min(rest, low + buckets) - low)
    low += buckets
  return counts
