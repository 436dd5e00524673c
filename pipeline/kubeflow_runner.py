"""Compiles the same DAG for Kubeflow Pipelines (KFP 2): binds the KubeflowV2DagRunner, no more.

`KubeflowV2DagRunner` writes a bare PipelineSpec 2.1 as YAML (`use_pipeline_spec_2_1=True`,
`.yaml` output), which `kfp.Client` uploads; TFX's `.json` output is a Vertex PipelineJob
wrapper that `kfp.Client` refuses, so only `.yaml`/`.yml` are written. Every task runs
`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor` in `image`,
which must have this project installed (the top-level Dockerfile builds it).

Open-source KFP cannot run TFX's Resolver node: it compiles to two `resolver` executors
(Vertex ML Metadata artifact queries: the latest ModelBlessing with blessed = 1, then the Model
it names), and the open-source backend runs only container and importer executors. So the
Kubeflow build replaces it with BaselinePicker (`baseline_from_pushes=True`), a container task
that hands the newest model pushed to `<pipeline_root>/serving_model` to the Evaluator as its
baseline (none on the first run; components/baseline_picker.py). Its task is compiled with
caching off: its answer depends on the pushes of earlier runs, not on its inputs.

Resource requests (`compile_pipeline(resources=...)`) are written into the compiled spec
afterwards by `entropy_coder.pipeline.kfp_resources`, as kfp 2.0.1's compiler writes them.
Uploading a compiled file and starting a run is `entropy_coder.pipeline.kfp_submit`; running one
on this machine, task by task, is `entropy_coder.pipeline.kfp_local`.
"""
import os

from entropy_coder import uris
from entropy_coder.errors import UserError, describe
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import kfp_resources
from entropy_coder.pipeline import kfp_submit


def create_kubeflow_pipeline(settings: configs.RunSettings, pipeline_root: str,
                             pipeline_name: str = configs.PIPELINE_NAME):
  """The local pipeline's DAG, BaselinePicker for the Resolver; everything under pipeline_root."""
  from entropy_coder.pipeline import pipeline  # pylint: disable=g-import-not-at-top  (TFX: slow)
  return pipeline.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      serving_model_dir=uris.join(pipeline_root, configs.SERVING_MODEL_DIRNAME),
      codes_dir=settings.codes_dir,
      use_resolver=False,
      baseline_from_pushes=True,
      enable_cache=True,
      **settings.pipeline_arguments(),
      metadata_connection_config=None,  # KFP brings its own ML-Metadata
      beam_pipeline_args=configs.IN_PROCESS_BEAM_ARGS)


def compile_pipeline(output_file: str, settings: configs.RunSettings,
                     image: str = configs.DEFAULT_IMAGE,
                     pipeline_root: str = configs.DEFAULT_KFP_PIPELINE_ROOT,
                     resources=None) -> str:
  """Writes the PipelineSpec YAML to `output_file`; returns its path.

  `resources`: `kfp_resources.parse_resources(...)`'s {task or '*': {field: value}}, written into the
  executors' container specs (checked before compiling: an unknown task is a UserError)."""
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # pylint: disable=g-import-not-at-top
  if not output_file.endswith(kfp_submit.PACKAGE_SUFFIXES):
    raise UserError(describe(output_file, 'the compiled pipeline must be a .yaml or .yml file '
                             '(kfp.Client reads only those; TFX .json is a Vertex PipelineJob)'))
  directory = os.path.dirname(os.path.abspath(output_file))
  if not os.path.isdir(directory):
    raise UserError(describe(directory, 'output directory does not exist'))
  runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
          default_image=image, use_pipeline_spec_2_1=True),
      output_dir=directory,
      output_filename=os.path.basename(output_file))
  dag = create_kubeflow_pipeline(settings, pipeline_root)
  kfp_resources.check_tasks(resources or {}, {node.id for node in dag.components})
  runner.run(dag, write_out=True)
  from entropy_coder.pipeline import pipeline  # pylint: disable=g-import-not-at-top

  def edit(document):
    _disable_cache(document, [pipeline.BASELINE_PICKER_ID])
    kfp_resources.apply_resources(document, resources or {})
  _rewrite_spec(output_file, edit)
  return output_file


def _rewrite_spec(path, edit):
  """Loads the compiled YAML, applies `edit(document)` in place, writes it back."""
  import yaml  # pylint: disable=g-import-not-at-top
  with open(path, encoding='utf-8') as f:
    document = yaml.safe_load(f)
  edit(document)
  with open(path, 'w', encoding='utf-8') as f:
    yaml.safe_dump(document, f, sort_keys=True)


def _disable_cache(document, task_names):
  """KFP must run these tasks every time (TFX's compiler caches all tasks or none)."""
  tasks = document['root']['dag']['tasks']
  for name in task_names:
    tasks[name]['cachingOptions'] = {'enableCache': False}
