"""Compiles the same DAG for Kubeflow Pipelines (KFP 2) and submits it with the KFP client.

`KubeflowV2DagRunner` writes a bare PipelineSpec 2.1 as YAML (`use_pipeline_spec_2_1=True`,
`.yaml` output), which `kfp.Client` uploads; TFX's `.json` output is a Vertex PipelineJob
wrapper that `kfp.Client` refuses, so only `.yaml`/`.yml` are written. Every task runs
`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor` in `image`,
which must have this project installed (the top-level Dockerfile builds it).

Open-source KFP cannot run TFX's Resolver node: it compiles to two `resolver` executors
(Vertex ML Metadata artifact queries: the latest ModelBlessing with blessed = 1, then the Model
it names), and the open-source backend runs only container and importer executors. So the
Kubeflow build leaves it out (`use_resolver=False`): a model is blessed on the absolute bound
alone. docs/PIPELINE.md explains the plan.
"""
import os

from entropy_coder.errors import UserError, describe
from entropy_coder.pipeline import configs

DEFAULT_IMAGE = configs.DEFAULT_IMAGE
DEFAULT_KFP_PIPELINE_ROOT = configs.DEFAULT_KFP_PIPELINE_ROOT
DEFAULT_EXPERIMENT = 'entropy-coder'
_YAML_SUFFIXES = ('.yaml', '.yml')


def create_kubeflow_pipeline(settings: configs.RunSettings, pipeline_root: str,
                             pipeline_name: str = configs.PIPELINE_NAME):
  """The local pipeline's DAG, minus the Resolver; artifacts and pushes under pipeline_root."""
  from entropy_coder.pipeline import pipeline  # pylint: disable=g-import-not-at-top  (TFX: slow)
  return pipeline.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      serving_model_dir=_join(pipeline_root, configs.SERVING_MODEL_DIRNAME),
      codes_dir=settings.codes_dir,
      use_resolver=False,
      enable_cache=True,
      **settings.pipeline_arguments(),
      metadata_connection_config=None,  # KFP brings its own ML-Metadata
      beam_pipeline_args=configs.LOCAL_BEAM_ARGS)


def _join(root, name):
  return root.rstrip('/') + '/' + name if '://' in root else os.path.join(root, name)


def compile_pipeline(output_file: str, settings: configs.RunSettings,
                     image: str = DEFAULT_IMAGE,
                     pipeline_root: str = DEFAULT_KFP_PIPELINE_ROOT) -> str:
  """Writes the PipelineSpec YAML to `output_file`; returns its path."""
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # pylint: disable=g-import-not-at-top
  if not output_file.endswith(_YAML_SUFFIXES):
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
  runner.run(create_kubeflow_pipeline(settings, pipeline_root), write_out=True)
  return output_file


def submit(package_file: str, host: str, pipeline_root: str, experiment: str = DEFAULT_EXPERIMENT,
           namespace=None, run_name=None, timeout: float = 30.0):
  """Uploads and starts a run on the KFP server at `host`; returns (run id, run URL).

  Unreachable or non-KFP hosts fail with one line naming the host, not a urllib3 traceback.
  A quick probe of KFP's health endpoint comes first: kfp.Client's own check retries five
  times, 5 s apart, logging a traceback each time, before it gives up on a non-KFP server.
  """
  import logging  # pylint: disable=g-import-not-at-top
  import kfp  # pylint: disable=g-import-not-at-top
  import kfp_server_api  # pylint: disable=g-import-not-at-top
  import urllib3  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(package_file):
    raise UserError(describe(package_file, 'no such pipeline package'))
  if not package_file.endswith(_YAML_SUFFIXES):
    raise UserError(describe(package_file, 'kfp.Client takes a compiled .yaml/.yml pipeline'))
  _probe_kfp_api(host, timeout)
  root_logger = logging.getLogger()
  saved_level = root_logger.level
  root_logger.setLevel(logging.CRITICAL)  # kfp logs each failed health check as a traceback
  try:
    with _socket_timeout(timeout):
      client = kfp.Client(host=host, namespace=namespace or 'kubeflow')
      result = client.create_run_from_pipeline_package(
          package_file, arguments={}, run_name=run_name, experiment_name=experiment,
          namespace=namespace, pipeline_root=pipeline_root)
  except urllib3.exceptions.MaxRetryError as e:
    raise UserError(f'{host}: cannot reach the Kubeflow Pipelines API '
                    f'({_reason(e.reason)})') from None
  except TimeoutError as e:
    raise UserError(f'{host}: no usable answer from a Kubeflow Pipelines API '
                    f'({_reason(e)})') from None
  except kfp_server_api.ApiException as e:
    raise UserError(f'{host}: Kubeflow Pipelines API refused the run: HTTP {e.status} '
                    f'{(e.reason or "").strip()}') from None
  finally:
    root_logger.setLevel(saved_level)
  return result.run_id, f'{host.rstrip("/")}/#/runs/details/{result.run_id}'


_HEALTHZ_PATH = '/apis/v2beta1/healthz'


def _probe_kfp_api(host, timeout):
  """One GET of KFP's health endpoint, no retries: fails fast on a wrong or dead host."""
  import urllib3  # pylint: disable=g-import-not-at-top
  if not host.startswith(('http://', 'https://')):
    raise UserError(f'{host}: --host must be an http:// or https:// URL of the KFP API')
  http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout), retries=False)
  try:
    response = http.request('GET', host.rstrip('/') + _HEALTHZ_PATH)
  except urllib3.exceptions.NewConnectionError as e:  # a ConnectTimeoutError subclass in urllib3 1
    raise UserError(f'{host}: cannot reach the Kubeflow Pipelines API ({_reason(e)})') from None
  except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError):
    raise UserError(f'{host}: no answer from a Kubeflow Pipelines API within '
                    f'{timeout:g} s') from None
  except urllib3.exceptions.HTTPError as e:
    raise UserError(f'{host}: cannot reach the Kubeflow Pipelines API ({_reason(e)})') from None
  if response.status != 200:
    hint = ' (behind a login? port-forward the ml-pipeline-ui service)' if 300 <= response.status < 400 else ''
    raise UserError(f'{host}: not a Kubeflow Pipelines API (GET {_HEALTHZ_PATH} answered '
                    f'HTTP {response.status}){hint}')


def _reason(error):
  text = str(error).splitlines()[0] if str(error) else type(error).__name__
  return text.split('>: ')[-1]


class _socket_timeout:  # pylint: disable=invalid-name
  """Bounds every blocking socket call of the KFP client (it sets no timeout of its own)."""

  def __init__(self, seconds):
    self._seconds = seconds

  def __enter__(self):
    import socket  # pylint: disable=g-import-not-at-top
    self._previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(self._seconds)

  def __exit__(self, *exc):
    import socket  # pylint: disable=g-import-not-at-top
    socket.setdefaulttimeout(self._previous)
