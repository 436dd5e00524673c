"""`GenerateSyntheticExamples`: the synthetic source as a Beam PTransform over a pipeline root.

    PBegin --Create--> index ranges [a, b) --Reshuffle--> spread over workers
           --GenerateRange--> numba kernel on the whole range (64 samples per word)
           --> serialized tf.Example per sample (our layout of codes_format, written by
               example_wire: the bytes of TensorFlow's deterministic serializer, without
               importing TensorFlow into every worker)

Sample i is a pure function of (seed, i) (see `synthetic`), and its split of i alone (see
`splits`), so the set of examples is the same whatever the runner, the number of workers or the
bundle size; only their order varies. Each example also carries the int64 feature
`sample_index` (codes_format.FEATURE_SAMPLE_INDEX) unless `with_sample_index=False`, so two
datasets can be compared index by index; readers of codes ignore it.

Used by `entropy-coder generate` (with `emit='ranges'`: one element per range, which spares Beam
20,000 per-element round trips) and by the SyntheticCodeGen ExampleGen component, which applies
it once per split (`split='train'`, `split='eval'`), also from inside a `beam.ptransform_fn`.
"""
import math
import os
import sys
import time

import apache_beam as beam
import numpy as np

from entropy_coder import codes_format
from entropy_coder.data_gen import example_wire
from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.data_gen import synthetic
from entropy_coder.data_gen.synthetic_defaults import DEFAULT_BUNDLE_SIZE
from entropy_coder.errors import UserError

# Samples per work item: DEFAULT_BUNDLE_SIZE (data_gen/synthetic_defaults.py), fewer for big
# codes, so that an item's codes stay within BUNDLE_BITS (16 MiB as uint8).
BUNDLE_BITS = 1 << 24


def auto_bundle_size(shape):
  return max(1, min(DEFAULT_BUNDLE_SIZE, BUNDLE_BITS // math.prod(shape)))
METRICS_NAMESPACE = 'entropy_coder.data_gen'
PROGRESS_INTERVAL_S = 2.0
EMIT_MODES = ('examples', 'indexed', 'ranges')


def index_ranges(count, bundle_size, split=None, splits=splits_lib.DEFAULT_SPLITS, cut_at=()):
  """[(a, b), ...] covering [0, count), each holding about `bundle_size` samples of `split`.

  No range crosses a position in `cut_at` (the CLI cuts at shard starts, so that each range
  belongs to exactly one output file).
  """
  if split is None:
    span = bundle_size
  else:
    buckets = dict(splits)[split]
    span = math.ceil(bundle_size * sum(b for _, b in splits) / buckets)
  edges = sorted({0, count} | {c for c in cut_at if 0 < c < count})
  ranges = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    ranges += [(start, min(start + span, hi)) for start in range(lo, hi, span)]
  return ranges


class _GenerateRange(beam.DoFn):
  """[a, b) -> the examples of the samples in it (of `split` only, if given)."""

  def __init__(self, seed, shape, split, splits, with_sample_index, emit, progress):
    super().__init__()
    self._seed = seed
    self._shape = shape
    self._split = split
    self._splits = splits
    self._with_sample_index = with_sample_index
    self._emit = emit
    self._progress = progress
    self._counter = beam.metrics.Metrics.counter(METRICS_NAMESPACE, 'samples_generated')

  def setup(self):
    self._done = 0
    self._started = time.monotonic()
    self._last_report = self._started

  def process(self, index_range):
    start, stop = index_range
    indices = np.arange(start, stop, dtype=np.uint64)
    if self._split is not None:
      indices = indices[splits_lib.split_mask(indices, self._split, self._splits)]
    codes = synthetic.generate_codes(self._seed, indices, shape=self._shape)
    indices = indices.tolist()
    examples = example_wire.encode_batch(codes, indices if self._with_sample_index else None)
    self._counter.inc(len(indices))
    self._report(len(indices))
    if self._emit == 'ranges':
      yield (start, stop), examples
    elif self._emit == 'indexed':
      yield from zip(indices, examples)
    else:
      yield from examples

  def _report(self, count):
    """A progress line per worker at most every PROGRESS_INTERVAL_S (workers may be processes)."""
    self._done += count
    now = time.monotonic()
    if self._progress and now - self._last_report >= PROGRESS_INTERVAL_S:
      self._last_report = now
      print(f'{self._progress}: worker {os.getpid()}: {self._done} samples generated '
            f'({self._done / max(now - self._started, 1e-9):.0f}/s)', file=sys.stderr, flush=True)


class GenerateSyntheticExamples(beam.PTransform):
  """Applied to a pipeline root: emits serialized tf.Examples of samples 0 .. count-1.

  Args:
    count: dataset size; with `split`, only that split's share of indices [0, count) is emitted.
    shape: code shape [H, W, D] (default DATASET_SHAPE, as the original's dataset).
    seed: int in [0, 2**64); sample i depends only on (seed, i).
    split: None for all indices, else a split name of `splits`.
    splits: (name, buckets) pairs, see `splits.split_of`.
    bundle_size: samples generated per work item (None: `auto_bundle_size(shape)`).
    with_sample_index: add the int64 feature `sample_index` to every example.
    emit: 'examples' (serialized examples), 'indexed' ((sample index, example) pairs) or
      'ranges' (((a, b), [examples of the range in index order]) per work item).
    cut_at: indices no work item crosses (see `index_ranges`).
    progress: a prefix for per-worker progress lines on stderr, or None for none.
  """

  def __init__(self, count, shape=synthetic.DATASET_SHAPE, seed=0, split=None,
               splits=splits_lib.DEFAULT_SPLITS, bundle_size=None,
               with_sample_index=True, emit='examples', cut_at=(), progress=None, label=None):
    super().__init__(label)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
      raise UserError(f'sample count must be a non-negative int, got {count!r}')
    if bundle_size is None:
      bundle_size = auto_bundle_size(codes_format.check_shape(shape))
    if isinstance(bundle_size, bool) or not isinstance(bundle_size, int) or bundle_size < 1:
      raise UserError(f'bundle size must be a positive int, got {bundle_size!r}')
    if emit not in EMIT_MODES:
      raise ValueError(f'emit must be one of {EMIT_MODES}, got {emit!r}')
    self._count = count
    self._shape = codes_format.check_shape(shape)
    self._seed = synthetic.check_seed(seed)
    self._splits = splits_lib.check_splits(splits)
    if split is not None and split not in splits_lib.split_names(self._splits):
      raise UserError(f'unknown split "{split}"; known: '
                      f'{", ".join(splits_lib.split_names(self._splits))}')
    self._split = split
    self._bundle_size = bundle_size
    self._with_sample_index = with_sample_index
    self._emit = emit
    self._cut_at = tuple(int(c) for c in cut_at)
    self._progress = progress

  def expand(self, pbegin):
    ranges = index_ranges(self._count, self._bundle_size, self._split, self._splits,
                          self._cut_at)
    return (pbegin
            | 'IndexRanges' >> beam.Create(ranges)
            | 'Spread' >> beam.Reshuffle()
            | 'Generate' >> beam.ParDo(_GenerateRange(
                self._seed, self._shape, self._split, self._splits, self._with_sample_index,
                self._emit, self._progress)))

