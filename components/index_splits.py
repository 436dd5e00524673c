"""What our two ExampleGens share: splits decided by sample index, declared in `output_config`.

TFX's own ExampleGens put a record into a split by a hash of the record. Ours put sample `i`
(sample i of the generator, or file i of the sorted `.npz` files) into `split_of(i, splits)`,
so which sample lands in which split is known before any data is read, is the same in the CLI
and in the pipeline, and lets the tests predict every split's record count exactly.

The split names and weights still travel in the standard `output_config` (`hash_buckets` holds
the weight), so TFX writes `Split-<name>/` GZIP TFRecords, records the split names on the
`Examples` artifact, and the Trainer (`train`) and Evaluator (`eval`) find their splits as with
any ExampleGen. Only the routing differs: `IndexSplitExecutor.GenerateExamplesByBeam` asks the
subclass's source transform for all splits at once instead of hash-partitioning one stream.
"""
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from entropy_coder.data_gen import splits as splits_lib
from entropy_coder.errors import UserError

# The splits the Trainer and the Evaluator read; every split set must hold both.
REQUIRED_SPLITS = (splits_lib.TRAIN_SPLIT, splits_lib.EVAL_SPLIT)


def check_splits(splits, source='splits'):
  """'train:9,eval:1' or ((name, weight), ...) -> a checked tuple of (name, weight) pairs.

  On top of `splits.check_splits`, both REQUIRED_SPLITS must be present: a pipeline without
  them has nothing to train or to evaluate on.
  """
  pairs = (splits_lib.parse_splits(splits) if isinstance(splits, str)
           else splits_lib.check_splits(splits))
  names = [name for name, _ in pairs]
  missing = [name for name in REQUIRED_SPLITS if name not in names]
  if missing:
    raise UserError(f'{source}: the Trainer and Evaluator need splits {list(REQUIRED_SPLITS)}; '
                    f'{", ".join(missing)} missing from {names}')
  return pairs


def check_no_empty_split(count, splits, source):
  """Every split must get a sample: an empty eval split would fail later, far from the cause."""
  counts = splits_lib.split_counts(count, splits)
  empty = [name for name, n in counts.items() if n == 0]
  if empty:
    text = ','.join(f'{name}:{weight}' for name, weight in splits)
    raise UserError(f'{source}: {count} samples leave split {", ".join(empty)} empty with splits '
                    f'{text} (sample i goes to bucket i mod {sum(w for _, w in splits)}); '
                    'add samples or change the splits')
  return counts


def files_by_split(paths, splits):
  """{split name: [(index, path)]}: file i of `paths` goes to split `split_of(i)`, the
  assignment every index-split import shares (names in `splits` order, each kept in order)."""
  by_split = {name: [] for name, _ in splits}
  for index, path in enumerate(paths):
    by_split[splits_lib.split_of(index, splits)].append((index, path))
  return by_split


def output_config(splits):
  """The standard ExampleGen output_config carrying our split names and weights."""
  return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
      example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=weight)
      for name, weight in check_splits(splits)]))


def read_exec_properties(exec_properties):
  """exec_properties -> (the single input split's pattern, the (name, weight) splits)."""
  input_config = example_gen_pb2.Input()
  proto_utils.json_to_proto(
      exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
  config = example_gen_pb2.Output()
  proto_utils.json_to_proto(
      exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], config)
  if len(input_config.splits) != 1:
    raise ValueError(f'expected one input split, got {len(input_config.splits)}')
  splits = check_splits(
      [(split.name, split.hash_buckets) for split in config.split_config.splits],
      'output_config')
  return input_config.splits[0].pattern, splits


class IndexSplitExecutor(base_example_gen_executor.BaseExampleGenExecutor):
  """An ExampleGen executor whose source transform emits every split itself, by sample index.

  Subclasses implement `GetInputSourceToExamplePTransform()` returning a PTransform factory
  called as `factory(exec_properties, pattern, splits)`, applied to the pipeline, that returns
  a dict {split name: PCollection of serialized tf.Examples}. The base class's `Do` writes each
  split to `Split-<name>/` and sets the artifact's split names.
  """

  def GenerateExamplesByBeam(self, pipeline, exec_properties):
    pattern, splits = read_exec_properties(exec_properties)
    source = self.GetInputSourceToExamplePTransform()
    return pipeline | 'InputToSplits' >> source(exec_properties, pattern, splits)
