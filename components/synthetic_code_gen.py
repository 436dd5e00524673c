"""SyntheticCodeGen: the ExampleGen that generates the original's synthetic codes in Beam.

The pipeline's first component. It is a `QueryBasedExampleGen` whose "query" is a JSON object
of the generator's parameters (count, shape, seed and the generator's id), so that:

* the parameters are recorded in ML-Metadata with the execution, and the cache re-uses an
  earlier output exactly when they (or the splits, or the generator) are unchanged;
* TFX's ExampleGen machinery writes a standard `Examples` artifact: `Split-train/`,
  `Split-eval/` GZIP TFRecords of our tf.Example layout (entropy_coder.codes_format).

Sample `i` of `seed` is `generate_codes(seed, i)`, goes to split `split_of(i, splits)` and
carries its index in the `sample_index` feature (data_gen.beam_source).
"""
import json
import numbers

import apache_beam as beam
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from entropy_coder import codes_format
from entropy_coder.components import index_splits
from entropy_coder.data_gen import beam_source
from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.data_gen import synthetic
from entropy_coder.errors import UserError


def make_query(count, shape=synthetic.DATASET_SHAPE, seed=0):
  """The generator parameters as the canonical JSON 'query' (sorted keys: stable cache key)."""
  if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
    raise UserError(f'count must be a positive int, got {count!r}')
  seed = synthetic.check_seed(seed)
  shape = codes_format.check_shape(shape, 'SyntheticCodeGen')
  return json.dumps({'count': int(count), 'shape': [int(s) for s in shape], 'seed': int(seed),
                     'generator': synthetic.GENERATOR_ID}, sort_keys=True)


def parse_query(query):
  """Inverse of `make_query`: -> (count, shape, seed). Refuses another generator's query."""
  params = json.loads(query)
  if params.get('generator') != synthetic.GENERATOR_ID:
    raise ValueError(f'query was made for generator {params.get("generator")!r}, '
                     f'this is {synthetic.GENERATOR_ID!r}')
  return params['count'], tuple(params['shape']), params['seed']


@beam.ptransform_fn
def _GenerateSplits(pbegin, exec_properties, pattern, splits):  # pylint: disable=invalid-name
  """PBegin -> {split: PCollection of serialized tf.Examples}, one generator run per split."""
  del exec_properties  # everything is in the query
  count, shape, seed = parse_query(pattern)
  return {
      name: pbegin | f'Generate[{name}]' >> beam_source.GenerateSyntheticExamples(
          count, shape=shape, seed=seed, split=name, splits=splits)
      for name, _ in splits
  }


class Executor(index_splits.IndexSplitExecutor):
  """Runs the generator in the component's Beam pipeline (its beam_pipeline_args apply)."""

  def GetInputSourceToExamplePTransform(self):
    return _GenerateSplits


class SyntheticCodeGen(example_gen_component.QueryBasedExampleGen):
  """Generates `count` synthetic codes of `shape` [H, W, D] from `seed` as an Examples artifact.

  Output `examples`: standard `Examples`, splits as `splits` (default train 9 : eval 1 by
  sample index). Same parameters -> same bytes per record, so the run is cacheable.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, count, shape=synthetic.DATASET_SHAPE, seed=0,
               splits=splits_lib.DEFAULT_SPLITS):
    query = make_query(count, shape, seed)
    splits = index_splits.check_splits(splits)
    index_splits.check_no_empty_split(count, splits, 'SyntheticCodeGen')
    super().__init__(
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name='generator', pattern=query)]),
        output_config=index_splits.output_config(splits))
