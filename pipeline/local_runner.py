"""Runs the pipeline on this machine: BeamDagRunner, a sqlite ML-Metadata store, one root folder.

Everything of a run lives under the pipeline root (default `runs/local`):
`metadata.sqlite` (ML-Metadata), one folder per component with its artifacts, and
`serving_model/<version>/` for every blessed model the Pusher pushed. Running again with
nothing changed re-uses every cached component output.

`python -m entropy_coder.pipeline.local_runner` runs the embedded demo default; the CLI
(`entropy-coder pipeline run`) adds flags and prints a summary.
"""
import os

from tfx import v1 as tfx
from tfx.orchestration.beam import beam_dag_runner

from entropy_coder.pipeline import configs
from entropy_coder.pipeline import pipeline


def run(settings: configs.RunSettings, root: str = configs.DEFAULT_PIPELINE_ROOT,
        pipeline_name: str = configs.PIPELINE_NAME) -> configs.LocalPaths:
  """Runs the whole DAG once (synchronously) and returns where its outputs are."""
  paths = configs.LocalPaths(os.path.abspath(root))
  os.makedirs(paths.root, exist_ok=True)
  dag = pipeline.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=paths.pipeline_root,
      serving_model_dir=paths.serving_model_dir,
      codes_dir=os.path.abspath(settings.codes_dir) if settings.codes_dir else None,
      use_resolver=True,
      enable_cache=True,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          paths.metadata_path),
      beam_pipeline_args=configs.IN_PROCESS_BEAM_ARGS,
      **settings.pipeline_arguments())
  beam_dag_runner.BeamDagRunner().run(dag)
  return paths


if __name__ == '__main__':
  run(configs.RunSettings().checked())
