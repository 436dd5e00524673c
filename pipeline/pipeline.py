"""The one DAG of the product; the local and Kubeflow runners only bind paths and orchestrators.

```
 SyntheticCodeGen | NpzCodeImport | ImageCodeImport
                                  ──examples──┬──────────────┬──────────────────┐
                                              v              │                  │
                                           Trainer ──model──>│<─────────────────│──┐
                                              │              v                  v  │
 Resolver(latest blessed model) ──baseline──> Evaluator (TFMA)     RealCompressionCheck
                                              │ blessing (ModelBlessing)        │ blessing
                                              v                                 │ (InfraBlessing:
                                           Pusher <──infra_blessing─────────────┘  exact round
                                              │                                    trip, real
                                              v                                    size ~ theory)
                                   serving_model/<version>  (only when BOTH are blessed)
```

Why no StatisticsGen / SchemaGen / ExampleValidator: our Examples hold one packed `code` bytes
value and a 3-int `code_shape` per record. TFDV's statistics of these are byte-string lengths
and a histogram that mixes H, W and D in one int list, so an inferred schema and its anomaly
check would catch nothing a reader of the codes does not already reject with a precise
message (entropy_coder.codes_format checks every record's size and padding; the Trainer checks
that D fits layer_depth / layer_count). They would cost three Beam jobs per run for no check.
"""
from typing import List, Optional, Sequence, Tuple

from tfx import v1 as tfx
from tfx.types import standard_artifacts

from entropy_coder import push_gates
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import eval_config as eval_config_lib

# Stable node ids: ML-Metadata records them, `entropy-coder metrics` and the tests look them up.
RESOLVER_ID = 'latest_blessed_model_resolver'
BASELINE_PICKER_ID = 'BaselinePicker'
EVALUATOR_ID = 'Evaluator'


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    model_config: dict,
    train_config: dict,
    train_steps: int,
    serving_model_dir: str,
    count: int,
    code_shape: Tuple[int, int, int],
    seed: int,
    codes_dir: Optional[str] = None,
    images_dir: Optional[str] = None,
    encoder_dir: Optional[str] = None,
    max_code_length: float = push_gates.DEFAULT_MAX_CODE_LENGTH,
    change_tolerance: float = push_gates.DEFAULT_CHANGE_TOLERANCE,
    use_resolver: bool = True,
    baseline_from_pushes: bool = False,
    real_compression_check: bool = True,
    max_real_over_theory: float = push_gates.DEFAULT_MAX_REAL_OVER_THEORY,
    enable_cache: bool = True,
    metadata_connection_config=None,
    beam_pipeline_args: Sequence[str] = (),
) -> tfx.dsl.Pipeline:
  """Examples -> Trainer -> Evaluator (vs the latest blessed model) -> Pusher, + real coding.

  Args:
    codes_dir: None generates `count` synthetic codes of `code_shape` from `seed`; a directory
      of the original's `.npz` codes imports those instead (`seed` still seeds training).
    images_dir, encoder_dir: a directory of pictures, coded by the trained image encoder in
      `encoder_dir` (ImageCodeImport), instead of either.
    model_config, train_config: the original's JSON keys, passed to the Trainer's run_fn.
    train_steps: the Trainer's step limit.
    max_code_length: blessing bound on the eval split's code length, bits per bit.
    change_tolerance: how much worse than the baseline a candidate may be (bits per bit; 0 =
      no worse). Only applies when `use_resolver` finds a blessed baseline.
    use_resolver: False drops the latest-blessed-model Resolver (open-source Kubeflow cannot
      run it, docs/PIPELINE.md), leaving only the absolute bound.
    real_compression_check: add RealCompressionCheck (real compress + decompress of the eval
      split); its InfraBlessing is the Pusher's `infra_blessing`, so a model is pushed only
      after an exact round trip. False leaves the push to the Evaluator's blessing alone.
    max_real_over_theory: the check blesses only when the real payload is at most this much
      (relative, 0.02 = 2 %) above the model's theoretical code length.
  """
  from entropy_coder import components  # pylint: disable=g-import-not-at-top

  if images_dir:
    from entropy_coder.components import image_code_import  # pylint: disable=g-import-not-at-top
    example_gen = image_code_import.ImageCodeImport(input_dir=images_dir, encoder_dir=encoder_dir)
  elif codes_dir:
    example_gen = components.NpzCodeImport(input_dir=codes_dir)
  else:
    example_gen = components.SyntheticCodeGen(count=count, shape=tuple(code_shape), seed=seed)
  examples = example_gen.outputs['examples']

  trainer = tfx.components.Trainer(
      run_fn=configs.TRAINER_RUN_FN,
      examples=examples,
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      custom_config={'model_config': dict(model_config), 'train_config': dict(train_config),
                     'seed': seed, 'eval_every': configs.trainer_eval_every(train_steps)})
  model = trainer.outputs['model']

  nodes: List = [example_gen, trainer]
  baseline_model = None
  if use_resolver and baseline_from_pushes:
    raise ValueError('use_resolver and baseline_from_pushes exclude each other')
  evaluator_class = tfx.components.Evaluator
  if baseline_from_pushes:
    from entropy_coder.components import baseline_picker  # pylint: disable=g-import-not-at-top
    picker = baseline_picker.BaselinePicker(
        serving_model_dir=serving_model_dir).with_id(BASELINE_PICKER_ID)
    nodes.append(picker)
    baseline_model = picker.outputs['baseline']
    evaluator_class = baseline_picker.BaselineAwareEvaluator
  if use_resolver:
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id(RESOLVER_ID)
    nodes.append(resolver)
    baseline_model = resolver.outputs['model']

  evaluator = evaluator_class(
      examples=examples,
      model=model,
      baseline_model=baseline_model,
      eval_config=eval_config_lib.make_eval_config(
          max_code_length=max_code_length, change_tolerance=change_tolerance)
  ).with_id(EVALUATOR_ID)

  round_trip_blessing = None
  if real_compression_check:
    from entropy_coder.components import real_compression  # pylint: disable=g-import-not-at-top
    check = real_compression.RealCompressionCheck(
        examples=examples, model=model, max_real_over_theory=float(max_real_over_theory))
    nodes.append(check)
    round_trip_blessing = check.outputs['blessing']

  pusher = tfx.components.Pusher(
      model=model,
      model_blessing=evaluator.outputs['blessing'],
      infra_blessing=round_trip_blessing,
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))
  nodes += [evaluator, pusher]

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=nodes,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args))
