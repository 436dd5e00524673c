"""Uploads a compiled pipeline to a Kubeflow Pipelines server and starts a run (`pipeline submit`).

The client side of Kubeflow: `kfp.Client` does the upload, this module makes its failures one
line. A wrong or dead `--host` is found by one quick probe of KFP's health endpoint before the
client starts (kfp.Client's own check retries five times, 5 s apart, with a traceback each
time); every socket call of the client is bounded by `timeout`; and urllib3 / KFP API errors
become a UserError naming the host. Compiling is `entropy_coder.pipeline.kubeflow_runner`.
"""
import os

from entropy_coder.errors import UserError, describe

DEFAULT_EXPERIMENT = 'entropy-coder'
# What kfp.Client uploads: a bare PipelineSpec YAML (TFX's .json output is a Vertex PipelineJob
# wrapper that kfp.Client refuses), so the Kubeflow build writes only these too.
PACKAGE_SUFFIXES = ('.yaml', '.yml')


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
  if not package_file.endswith(PACKAGE_SUFFIXES):
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
