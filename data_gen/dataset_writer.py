"""A synthetic dataset directory: GZIP TFRecord shards plus `manifest.json`, from one Beam run.

    GenerateSyntheticExamples (emit='ranges', no range crossing a shard start)
        --WritePiece--> one uncompressed TFRecord piece file per range (in parallel)
        --GroupByKey on shard (piece names only)--> WriteShard: the shard's pieces in index
          order, as one GZIP stream -> data-SSSSS-of-NNNNN.tfrecord.gz (shards in parallel)

Shard k holds samples [k*count//M, (k+1)*count//M) in index order, so the files depend only on
(count, shape, seed, shards): 1 or 2 workers, any bundle size, give the same bytes (the
manifest records their sha256). Reading the shards in name order gives samples 0 .. count-1.

The shards are written into a temporary directory inside the output directory and moved into
place when all are complete; `manifest.json` is written last, so a directory with a manifest
holds a whole dataset.
"""
import glob
import hashlib
import json
import os
import shutil

from entropy_coder import codes_format
from entropy_coder.codes_format import MANIFEST_NAME
from entropy_coder.data_gen import synthetic
from entropy_coder.data_gen.synthetic_defaults import SAMPLES_PER_SHARD
from entropy_coder.errors import UserError, describe

MANIFEST_FORMAT = 'entropy-coder-synthetic-dataset'
MANIFEST_VERSION = 1
SHARD_PATTERN = 'data-?????-of-?????.tfrecord.gz'
_TMP_PREFIX = '.generate-tmp-'


def shard_name(shard, shards):
  return f'data-{shard:05d}-of-{shards:05d}.tfrecord.gz'


def shard_bounds(shard, count, shards):
  """Sample indices [lo, hi) of shard `shard`."""
  return shard * count // shards, (shard + 1) * count // shards


def shard_of(index, count, shards):
  """Inverse of `shard_bounds`: the shard holding sample `index`."""
  shard = index * shards // count
  while index >= shard_bounds(shard, count, shards)[1]:
    shard += 1
  while index < shard_bounds(shard, count, shards)[0]:
    shard -= 1
  return shard


def default_shards(count):
  return max(1, min(count, -(-count // SAMPLES_PER_SHARD)))


def prepare_output_dir(output_dir, overwrite):
  """Creates `output_dir`; refuses a non-empty one unless `overwrite`."""
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise UserError(describe(output_dir, 'exists and is not a directory'))
  if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
    raise UserError(describe(output_dir, 'directory is not empty; pass --overwrite to replace '
                             'the dataset in it'))
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise UserError(describe(output_dir, f'cannot create directory ({e.strerror})')) from None


def _remove_old_dataset(output_dir, tmp_dir):
  """Our files from earlier runs (only those: anything else in the directory stays)."""
  for path in glob.glob(os.path.join(output_dir, SHARD_PATTERN)):
    os.remove(path)
  for path in glob.glob(os.path.join(output_dir, _TMP_PREFIX + '*')):
    if os.path.abspath(path) != os.path.abspath(tmp_dir):
      shutil.rmtree(path, ignore_errors=True)
  manifest = os.path.join(output_dir, MANIFEST_NAME)
  if os.path.exists(manifest):
    os.remove(manifest)


def pipeline_options(num_workers):
  """DirectRunner: in-process for 1 worker, one process per worker otherwise."""
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  if num_workers > 1:
    return PipelineOptions(flags=[], runner='DirectRunner', direct_running_mode='multi_processing',
                           direct_num_workers=num_workers)
  return PipelineOptions(flags=[], runner='DirectRunner', direct_running_mode='in_memory',
                         direct_num_workers=1)


class _WritePieceFn:
  """((a, b), examples) -> (shard, (a, b, piece path)): the range as an uncompressed TFRecord.

  Data go through files, not through Beam: the shuffle below moves only these small tuples,
  so memory stays at one range whatever the dataset size.
  """

  def __init__(self, directory, count, shards):
    self._directory = directory
    self._count = count
    self._shards = shards

  def __call__(self, range_and_examples):
    from entropy_coder.data_gen import tfrecord_files  # pylint: disable=g-import-not-at-top
    (start, stop), examples = range_and_examples
    if len(examples) != stop - start:
      raise RuntimeError(f'range [{start}, {stop}) produced {len(examples)} examples')
    path = os.path.join(self._directory, f'piece-{start:020d}-{stop:020d}.tfrecord')
    tfrecord_files.write_tfrecords(path, examples)
    return shard_of(start, self._count, self._shards), (start, stop, path)


class _WriteShardFn:
  """(shard, [(a, b, piece path), ...]) -> the shard file, one GZIP stream, checked complete."""

  def __init__(self, directory, count, shards, progress):
    self._directory = directory
    self._count = count
    self._shards = shards
    self._progress = progress

  def __call__(self, shard_and_pieces):
    import sys  # pylint: disable=g-import-not-at-top
    from entropy_coder.data_gen import tfrecord_files  # pylint: disable=g-import-not-at-top
    shard, pieces = shard_and_pieces
    pieces = sorted(pieces)
    lo, hi = shard_bounds(shard, self._count, self._shards)
    edges = [lo] + [stop for _, stop, _ in pieces]
    if [start for start, _, _ in pieces] != edges[:-1] or edges[-1] != hi:
      raise RuntimeError(f'shard {shard} did not get exactly the samples [{lo}, {hi})')
    name = shard_name(shard, self._shards)
    tfrecord_files.gzip_concatenation(os.path.join(self._directory, name),
                                      [path for _, _, path in pieces])
    for _, _, path in pieces:
      os.remove(path)
    if self._progress:
      print(f'{self._progress}: wrote {name} ({hi - lo} samples)', file=sys.stderr, flush=True)
    return shard


def _sha256(path):
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def write_dataset(output_dir, count, seed=0, shape=synthetic.DATASET_SHAPE, num_workers=1,
                  shards=None, bundle_size=None, overwrite=False, progress=None):
  """Generates samples 0 .. count-1 of `seed` into `output_dir`; returns the manifest dict."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from entropy_coder.data_gen import beam_source  # pylint: disable=g-import-not-at-top
  shape = codes_format.check_shape(shape)
  seed = synthetic.check_seed(seed)
  if count < 1:
    raise UserError(f'--count must be at least 1, got {count}')
  if num_workers < 1:
    raise UserError(f'--num-workers must be at least 1, got {num_workers}')
  shards = default_shards(count) if shards is None else shards
  if not 1 <= shards <= count:
    raise UserError(f'--shards must be between 1 and --count ({count}), got {shards}')
  if bundle_size is not None and bundle_size < 1:
    raise UserError(f'--bundle-size must be at least 1, got {bundle_size}')
  prepare_output_dir(output_dir, overwrite)

  tmp_dir = os.path.join(output_dir, f'{_TMP_PREFIX}{os.getpid()}')
  shutil.rmtree(tmp_dir, ignore_errors=True)
  os.makedirs(tmp_dir)
  try:
    with beam.Pipeline(options=pipeline_options(num_workers)) as pipeline:
      _ = (pipeline
           | 'Generate' >> beam_source.GenerateSyntheticExamples(
               count, shape=shape, seed=seed, bundle_size=bundle_size, emit='ranges',
               cut_at=[shard_bounds(k, count, shards)[0] for k in range(shards)],
               progress=progress)
           | 'WritePiece' >> beam.Map(_WritePieceFn(tmp_dir, count, shards))
           | 'GroupByShard' >> beam.GroupByKey()
           | 'WriteShard' >> beam.Map(_WriteShardFn(tmp_dir, count, shards, progress)))
    entries = []
    for shard in range(shards):
      name = shard_name(shard, shards)
      path = os.path.join(tmp_dir, name)
      if not os.path.exists(path):
        raise RuntimeError(f'the pipeline finished without writing {name}')
      lo, hi = shard_bounds(shard, count, shards)
      entries.append({'file': name, 'first_index': lo, 'count': hi - lo, 'sha256': _sha256(path)})
    _remove_old_dataset(output_dir, tmp_dir)  # only now: a failed run leaves the old dataset intact
    for entry in entries:
      os.replace(os.path.join(tmp_dir, entry['file']), os.path.join(output_dir, entry['file']))
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  manifest = {
      'format': MANIFEST_FORMAT,
      'version': MANIFEST_VERSION,
      'example_format_version': codes_format.EXAMPLE_FORMAT_VERSION,
      'generator': synthetic.GENERATOR_ID,
      'keep_probability': synthetic.KEEP_PROBABILITY_REALISED,
      'count': count,
      'shape': list(shape),
      'seed': seed,
      'features': list(codes_format.MANIFEST_FEATURES),
      'compression': 'GZIP',
      'shards': entries,
  }
  with open(os.path.join(output_dir, MANIFEST_NAME), 'w') as f:
    json.dump(manifest, f, indent=2)
    f.write('\n')
  return manifest
