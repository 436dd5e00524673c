"""GenerateSyntheticExamples in real Beam pipelines: complete, split by index, deterministic."""
import glob
import hashlib
import json
import os

import apache_beam as beam
from apache_beam.testing import util as beam_util
import numpy as np
import pytest

from entropy_coder import codes_format
from entropy_coder.data_gen import beam_source
from entropy_coder.data_gen import dataset_writer
from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError

_SHAPE = (5, 6, 4)
_SEED = 99


def _in_memory():
  return dataset_writer.pipeline_options(1)


def _index_of(serialized):
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  example = example_pb2.Example.FromString(serialized)
  values = example.features.feature[codes_format.FEATURE_SAMPLE_INDEX].int64_list.value
  return values[0] if values else None


def _expect_samples(indices, seed=_SEED, shape=_SHAPE):
  """A matcher: the examples are exactly samples `indices` of `seed`, each once, correct codes."""
  indices = sorted(indices)

  def check(examples):
    by_index = {}
    for serialized in examples:
      index = _index_of(serialized)
      assert index not in by_index, f'sample {index} emitted twice'
      by_index[index] = codes_format.decode_example(serialized)
    assert sorted(by_index) == indices
    expected = synthetic.generate_codes(seed, indices, shape=shape)
    for index, code in zip(indices, expected):
      np.testing.assert_array_equal(by_index[index], code, err_msg=f'sample {index}')
  return check


@pytest.mark.parametrize('bundle_size', [7, 1000])
def test_emits_every_sample_once_whatever_the_bundle_size(bundle_size):
  with beam.Pipeline(options=_in_memory()) as pipeline:
    examples = pipeline | beam_source.GenerateSyntheticExamples(
        150, shape=_SHAPE, seed=_SEED, bundle_size=bundle_size)
    beam_util.assert_that(examples, _expect_samples(range(150)))


def test_splits_partition_the_indices():
  splits = splits_lib.parse_splits('a:2,b:3,c:1')
  with beam.Pipeline(options=_in_memory()) as pipeline:
    for name, _ in splits:
      examples = pipeline | f'Generate[{name}]' >> beam_source.GenerateSyntheticExamples(
          100, shape=_SHAPE, seed=_SEED, split=name, splits=splits, bundle_size=9)
      expected = [i for i in range(100) if i % 6 in {'a': (0, 1), 'b': (2, 3, 4), 'c': (5,)}[name]]
      beam_util.assert_that(examples, _expect_samples(expected), label=f'Check[{name}]')


@beam.ptransform_fn
def _SplitsAsExampleGenWould(pipeline, count):  # pylint: disable=invalid-name
  """The shape of a TFX ExampleGen's source: a ptransform_fn applied to the Pipeline object."""
  return {name: pipeline | f'Generate[{name}]' >> beam_source.GenerateSyntheticExamples(
      count, shape=_SHAPE, seed=_SEED, split=name) for name, _ in splits_lib.DEFAULT_SPLITS}


def test_works_inside_a_ptransform_fn_applied_to_the_pipeline():
  pipeline = beam.Pipeline(options=_in_memory())
  outputs = pipeline | _SplitsAsExampleGenWould(60)  # pylint: disable=no-value-for-parameter
  beam_util.assert_that(outputs['train'], _expect_samples([i for i in range(60) if i % 10 != 9]),
                        label='CheckTrain')
  beam_util.assert_that(outputs['eval'], _expect_samples([9, 19, 29, 39, 49, 59]),
                        label='CheckEval')
  result = pipeline.run()
  result.wait_until_finish()
  counters = result.metrics().query(beam.metrics.MetricsFilter().with_name('samples_generated'))
  assert sum(c.committed for c in counters['counters']) == 60


def test_indexed_output_without_the_index_feature():
  def check(pairs):
    assert sorted(i for i, _ in pairs) == list(range(20))
    for index, serialized in pairs:
      assert _index_of(serialized) is None
      np.testing.assert_array_equal(codes_format.decode_example(serialized),
                                    synthetic.generate_codes(5, [index], shape=(3, 4, 2))[0])

  with beam.Pipeline(options=_in_memory()) as pipeline:
    pairs = pipeline | beam_source.GenerateSyntheticExamples(
        20, shape=(3, 4, 2), seed=5, bundle_size=6, with_sample_index=False, emit='indexed')
    beam_util.assert_that(pairs, check)


def test_split_of_buckets_indices_in_order():
  assert [splits_lib.split_of(i) for i in range(12)] == ['train'] * 9 + ['eval'] + ['train'] * 2
  splits = splits_lib.parse_splits('a:2, b:3,c:1')
  assert splits == (('a', 2), ('b', 3), ('c', 1))
  names = [splits_lib.split_of(i, splits) for i in range(601)]
  for name, _ in splits:
    mask = splits_lib.split_mask(np.arange(601), name, splits)
    assert mask.tolist() == [n == name for n in names]
  assert splits_lib.split_counts(601, splits) == {n: names.count(n) for n, _ in splits}


@pytest.mark.parametrize('text', ['train', 'train:0,eval:1', 'train:9,train:1', 'a b:1', '',
                                  'train:x'])
def test_bad_splits_are_user_errors(text):
  with pytest.raises(UserError):
    splits_lib.parse_splits(text)


def test_index_ranges_cover_split_and_cut():
  ranges = beam_source.index_ranges(100, 30, cut_at=[45, 90])
  assert ranges == [(0, 30), (30, 45), (45, 75), (75, 90), (90, 100)]
  eval_ranges = beam_source.index_ranges(1000, 10, split='eval')  # 10 eval samples per range
  assert eval_ranges[0] == (0, 100) and eval_ranges[-1] == (900, 1000)
  assert beam_source.index_ranges(0, 10) == []
  assert beam_source.auto_bundle_size(synthetic.DATASET_SHAPE) == 1024
  assert beam_source.auto_bundle_size((1000, 1000, 64)) == 1
  assert beam_source.auto_bundle_size((256, 256, 32)) == 8


@pytest.mark.parametrize('kwargs', [dict(count=-1), dict(count=5, bundle_size=0),
                                    dict(count=5, split='test'), dict(count=5, seed=-3),
                                    dict(count=5, shape=(2, 2))])
def test_bad_arguments_are_user_errors(kwargs):
  with pytest.raises(UserError):
    beam_source.GenerateSyntheticExamples(**kwargs)


def _decoded_by_index(directory):
  """{sample_index: code bytes} over all shards of a generated dataset directory."""
  out = {}
  for path in sorted(glob.glob(os.path.join(directory, dataset_writer.SHARD_PATTERN))):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    for record in tf.data.TFRecordDataset([path], compression_type='GZIP').as_numpy_iterator():
      out[_index_of(record)] = codes_format.decode_example(record).tobytes()
  return out


def _sha256s(directory):
  with open(os.path.join(directory, dataset_writer.MANIFEST_NAME)) as f:
    manifest = json.load(f)
  for entry in manifest['shards']:
    with open(os.path.join(directory, entry['file']), 'rb') as f:
      assert hashlib.sha256(f.read()).hexdigest() == entry['sha256']
  return [entry['sha256'] for entry in manifest['shards']]


def test_one_or_two_workers_any_shards_and_bundles_give_the_same_dataset(tmp_path):
  count, shape, seed = 230, (6, 7, 4), 42
  runs = {
      'one_worker': dict(num_workers=1, shards=3, bundle_size=17),
      'two_workers': dict(num_workers=2, shards=2, bundle_size=50),
      'one_worker_same_shards': dict(num_workers=1, shards=2, bundle_size=128),
  }
  for name, kwargs in runs.items():
    dataset_writer.write_dataset(str(tmp_path / name), count, seed=seed, shape=shape, **kwargs)
  datasets = {name: _decoded_by_index(str(tmp_path / name)) for name in runs}
  expected = synthetic.generate_codes(seed, 0, count, shape=shape)
  assert sorted(datasets['one_worker']) == list(range(count))
  for name, dataset in datasets.items():
    assert dataset == {i: code.tobytes() for i, code in enumerate(expected)}, name
  # Same shard count: the same files, byte for byte, from 2 workers or 1 and any bundle size.
  assert _sha256s(str(tmp_path / 'two_workers')) == _sha256s(
      str(tmp_path / 'one_worker_same_shards'))
