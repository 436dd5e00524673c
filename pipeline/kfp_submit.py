"""Uploads a compiled pipeline to a Kubeflow Pipelines server and starts a run (`pipeline submit`).

The client side of Kubeflow: `kfp.Client` does the upload, this module makes its failures one
line. A wrong or dead `--host` is found by one quick probe of KFP's health endpoint before the
client starts (kfp.Client's own check retries five times, 5 s apart, with a traceback each
time); every socket call of the client is bounded by `timeout`; and urllib3 / KFP API errors
become a UserError naming the host. Compiling is `entropy_coder.pipeline.kubeflow_runner`.

Authentication (`Auth`) is handed to kfp.Client as its own arguments: a bearer token
(`existing_token`; `--token` or the environment's `KFP_TOKEN`), a token file (kfp's
`ServiceAccountTokenVolumeCredentials` as `credentials`: the file is re-read on every request,
as Kubernetes rotates a projected service-account token), session cookies (`cookies`, e.g. the
`authservice_session` cookie of a Kubeflow login through Dex), an HTTP(S) `proxy`, and a CA
bundle (`ssl_ca_cert`) for a server whose certificate a private CA signed. The health probe
sends the same token, cookies, proxy and CA, so a cluster that needs them is probed as the
client will talk to it.
"""
import dataclasses
import os
from typing import Optional

from entropy_coder.errors import UserError, describe

TOKEN_ENV = 'KFP_TOKEN'


@dataclasses.dataclass(frozen=True)
class Auth:
  """How to authenticate to the KFP API: kfp.Client's own arguments. At most one of `token`
  and `token_file`."""
  token: Optional[str] = None  # kfp.Client(existing_token=...)
  token_file: Optional[str] = None  # kfp.Client(credentials=ServiceAccountTokenVolumeCredentials)
  cookies: Optional[str] = None  # kfp.Client(cookies=...): 'name=value; name2=value2'
  proxy: Optional[str] = None  # kfp.Client(proxy=...)
  ssl_ca_cert: Optional[str] = None  # kfp.Client(ssl_ca_cert=...): a PEM file

  @classmethod
  def from_flags(cls, token=None, token_file=None, cookies=None, proxy=None, ssl_ca_cert=None,
                 environ=None):
    """The CLI's values; no --token and no --token-file -> the environment's KFP_TOKEN."""
    environ = os.environ if environ is None else environ
    if token is not None and token_file is not None:
      raise UserError('--token and --token-file exclude each other')
    if token is None and token_file is None and environ.get(TOKEN_ENV):
      token = environ[TOKEN_ENV]
    return cls(token=token, token_file=token_file, cookies=cookies, proxy=proxy,
               ssl_ca_cert=ssl_ca_cert).checked()

  def checked(self):
    """One-line UserErrors for what cannot work, before any request."""
    if self.token is not None and self.token_file is not None:
      raise UserError('--token and --token-file exclude each other')
    if self.token is not None:
      _check_header_value('--token', self.token.strip())
    if self.token_file is not None:
      _check_header_value('--token-file', read_token_file(self.token_file), self.token_file)
    if self.cookies is not None:
      _check_header_value('--cookies', self.cookies.strip())
    if self.proxy is not None and not self.proxy.startswith(('http://', 'https://')):
      raise UserError(f'--proxy {self.proxy}: must be an http:// or https:// URL')
    if self.ssl_ca_cert is not None:
      _readable_file('--ssl-ca-cert', self.ssl_ca_cert, 'CA certificate file')
    return self

  def bearer_token(self):
    if self.token is not None:
      return self.token.strip()
    if self.token_file is not None:
      return read_token_file(self.token_file)
    return None

  def client_arguments(self):
    """kfp.Client keyword arguments."""
    arguments = {}
    if self.token is not None:
      arguments['existing_token'] = self.token.strip()
    if self.token_file is not None:
      from kfp.client import set_volume_credentials  # pylint: disable=g-import-not-at-top
      arguments['credentials'] = set_volume_credentials.ServiceAccountTokenVolumeCredentials(
          self.token_file)
    for key in ('cookies', 'proxy', 'ssl_ca_cert'):
      if getattr(self, key) is not None:
        arguments[key] = getattr(self, key).strip() if key == 'cookies' else getattr(self, key)
    return arguments

  def headers(self):
    """The headers kfp.Client sends with these settings (for the health probe)."""
    headers = {}
    token = self.bearer_token()
    if token:
      headers['Authorization'] = f'Bearer {token}'
    if self.cookies:
      headers['Cookie'] = self.cookies.strip()
    return headers


def _readable_file(flag, path, what):
  if not os.path.exists(path):
    raise UserError(describe(f'{flag} {path}', f'no such {what}'))
  if os.path.isdir(path):
    raise UserError(describe(f'{flag} {path}', f'is a directory, not a {what}'))
  if not os.access(path, os.R_OK):
    raise UserError(describe(f'{flag} {path}', f'cannot read the {what} (permission denied)'))


def read_token_file(path):
  """The token in `path`, stripped; one-line UserErrors for a missing, unreadable or empty
  file."""
  _readable_file('--token-file', path, 'token file')
  try:
    with open(path, encoding='utf-8') as f:
      token = f.read().strip()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(describe(f'--token-file {path}', f'cannot read the token file '
                             f'({getattr(e, "strerror", None) or e})')) from None
  if not token:
    raise UserError(describe(f'--token-file {path}', 'the token file is empty'))
  return token


def _check_header_value(flag, value, source=None):
  where = f'--token-file {source}' if source else flag
  if not value:
    raise UserError(f'{where}: empty')
  if any(ord(c) < 32 or ord(c) == 127 for c in value):
    raise UserError(f'{where}: holds a line break or control character; an HTTP header '
                    'cannot carry it')

DEFAULT_EXPERIMENT = 'entropy-coder'
# What kfp.Client uploads: a bare PipelineSpec YAML (TFX's .json output is a Vertex PipelineJob
# wrapper that kfp.Client refuses), so the Kubeflow build writes only these too.
PACKAGE_SUFFIXES = ('.yaml', '.yml')


def submit(package_file: str, host: str, pipeline_root: str, experiment: str = DEFAULT_EXPERIMENT,
           namespace=None, run_name=None, timeout: float = 30.0, auth: Optional[Auth] = None):
  """Uploads and starts a run on the KFP server at `host`; returns (run id, run URL).

  `auth`: the token, token file, cookies, proxy and CA bundle kfp.Client is given (`Auth`).

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
  auth = (auth or Auth()).checked()
  _probe_kfp_api(host, timeout, auth)
  root_logger = logging.getLogger()
  saved_level = root_logger.level
  root_logger.setLevel(logging.CRITICAL)  # kfp logs each failed health check as a traceback
  try:
    with _socket_timeout(timeout):
      client = kfp.Client(host=host, namespace=namespace or 'kubeflow',
                          **auth.client_arguments())
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
    hint = _auth_hint(e.status, auth)
    raise UserError(f'{host}: Kubeflow Pipelines API refused the run: HTTP {e.status} '
                    f'{(e.reason or "").strip()}{hint}') from None
  finally:
    root_logger.setLevel(saved_level)
  return result.run_id, f'{host.rstrip("/")}/#/runs/details/{result.run_id}'


_HEALTHZ_PATH = '/apis/v2beta1/healthz'


def _auth_hint(status, auth):
  if status not in (401, 403):
    return ''
  if auth.bearer_token() or auth.cookies:
    return ' (the server did not accept the token / cookies given)'
  return (' (the server wants authentication: --token, --token-file, KFP_TOKEN or --cookies; '
          'docs/PIPELINE.md)')


def _probe_kfp_api(host, timeout, auth=None):
  """One GET of KFP's health endpoint, no retries: fails fast on a wrong or dead host."""
  import urllib3  # pylint: disable=g-import-not-at-top
  auth = auth or Auth()
  if not host.startswith(('http://', 'https://')):
    raise UserError(f'{host}: --host must be an http:// or https:// URL of the KFP API')
  options = dict(timeout=urllib3.Timeout(total=timeout), retries=False)
  if auth.ssl_ca_cert:
    options['ca_certs'] = auth.ssl_ca_cert
  http = (urllib3.ProxyManager(auth.proxy, **options) if auth.proxy
          else urllib3.PoolManager(**options))
  try:
    response = http.request('GET', host.rstrip('/') + _HEALTHZ_PATH, headers=auth.headers())
  except urllib3.exceptions.NewConnectionError as e:  # a ConnectTimeoutError subclass in urllib3 1
    raise UserError(f'{host}: cannot reach the Kubeflow Pipelines API ({_reason(e)})') from None
  except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError):
    raise UserError(f'{host}: no answer from a Kubeflow Pipelines API within '
                    f'{timeout:g} s') from None
  except urllib3.exceptions.HTTPError as e:
    raise UserError(f'{host}: cannot reach the Kubeflow Pipelines API ({_reason(e)})') from None
  if response.status in (401, 403):
    raise UserError(f'{host}: the Kubeflow Pipelines API refused the request (GET '
                    f'{_HEALTHZ_PATH} answered HTTP {response.status})'
                    f'{_auth_hint(response.status, auth)}')
  if response.status != 200:
    hint = (' (behind a login? port-forward the ml-pipeline-ui service, or pass the session '
            '--cookies)' if 300 <= response.status < 400 else '')
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
