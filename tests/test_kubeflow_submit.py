"""`pipeline submit`: one-line errors for bad hosts, and a real upload to a stand-in KFP API.

The stand-in is a local HTTP server speaking the few KFP v2beta1 endpoints kfp.Client uses
(health, experiments, runs); it records what the client sent (bodies and headers) so the tests
can check that the run carries our compiled PipelineSpec and the pipeline root, and that the
token or cookies reach the server on every request.
"""
import http.server
import json
import socket
import threading
import time

import pytest
import yaml

from entropy_coder import cli
from entropy_coder.errors import UserError
from entropy_coder.pipeline import kfp_submit

SPEC = {'pipelineInfo': {'name': 'entropy-coder'}, 'root': {'dag': {'tasks': {}}},
        'schemaVersion': '2.1.0', 'sdkVersion': 'tfx-1.16.0'}


@pytest.fixture
def package(tmp_path):
  path = tmp_path / 'pipeline.yaml'
  path.write_text(yaml.safe_dump(SPEC))
  return str(path)


def _closed_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class _Server:
  """An HTTP server on a free port, served from a thread, for the duration of a test."""

  def __init__(self, handler):
    self.httpd = http.server.HTTPServer(('127.0.0.1', 0), handler)
    self.url = f'http://127.0.0.1:{self.httpd.server_port}'
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.httpd.shutdown()
    self.httpd.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass


class _Error500(_Quiet):

  def do_GET(self):  # pylint: disable=invalid-name
    self.send_response(500)
    self.end_headers()


class _FakeKfp(_Quiet):
  """The KFP v2beta1 API as far as kfp.Client.create_run_from_pipeline_package goes."""
  requests = []
  seen_headers = []  # (method, path, {lower-case header: value}) of every request
  require_token = None  # set: answer 401 to a request without `Authorization: Bearer <it>`

  def _refused(self, method):
    """Records the request's headers; True (after a 401) when the required token is missing."""
    # Header names are case-insensitive (kfp's client sends `authorization`): kept lower-case.
    self.seen_headers.append((method, self.path,
                              {key.lower(): value for key, value in self.headers.items()}))
    if self.require_token and self.headers.get('Authorization') != f'Bearer {self.require_token}':
      self.send_response(401)
      self.send_header('Content-Length', '0')
      self.end_headers()
      return True
    return False

  def _reply(self, body):
    data = json.dumps(body).encode()
    self.send_response(200)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def do_GET(self):  # pylint: disable=invalid-name
    if self._refused('GET'):
      return
    self.requests.append(('GET', self.path, None))
    if self.path.startswith('/apis/v2beta1/healthz'):
      self._reply({'multi_user': False})
    elif self.path.startswith('/apis/v2beta1/experiments'):
      self._reply({'experiments': [], 'total_size': 0})
    else:
      self.send_response(404)
      self.end_headers()

  def do_POST(self):  # pylint: disable=invalid-name
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])) or b'{}')
    if self._refused('POST'):
      return
    self.requests.append(('POST', self.path, body))
    if self.path.startswith('/apis/v2beta1/experiments'):
      self._reply({'experiment_id': 'exp-1', 'display_name': body.get('display_name')})
    elif self.path.startswith('/apis/v2beta1/runs'):
      self._reply({'run_id': 'run-7', 'display_name': body.get('display_name')})
    else:
      self.send_response(404)
      self.end_headers()


def test_closed_port_is_one_line_cannot_reach(package):
  host = f'http://127.0.0.1:{_closed_port()}'
  with pytest.raises(UserError, match=r'cannot reach the Kubeflow Pipelines API .*refused'):
    kfp_submit.submit(package, host, pipeline_root='gs://b/r', timeout=2)


def test_cli_prints_one_line_and_exits_2(package, capsys):
  host = f'http://127.0.0.1:{_closed_port()}'
  status = cli.main(['pipeline', 'submit', '--host', host, '--package', package, '--timeout', '2'])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2
  assert err[-1].startswith(f'entropy-coder pipeline: error: {host}: cannot reach')
  assert 'Traceback' not in '\n'.join(err)


def test_non_kfp_server_and_silent_server_fail_fast(package):
  with _Server(_Error500) as server:
    with pytest.raises(UserError, match='not a Kubeflow Pipelines API .*HTTP 500'):
      kfp_submit.submit(package, server.url, pipeline_root='gs://b/r', timeout=2)
  with socket.socket() as silent:  # accepts connections, never answers
    silent.bind(('127.0.0.1', 0))
    silent.listen(1)
    start = time.monotonic()
    with pytest.raises(UserError, match='no answer .* within 1 s'):
      kfp_submit.submit(package, f'http://127.0.0.1:{silent.getsockname()[1]}',
                        pipeline_root='gs://b/r', timeout=1)
    # Our 1 s bound holds, not kfp.Client's five health-check retries 5 s apart.
    assert time.monotonic() - start < 15


def test_submit_uploads_the_compiled_spec_with_the_pipeline_root(package):
  _FakeKfp.requests = []
  with _Server(_FakeKfp) as server:
    run_id, url = kfp_submit.submit(package, server.url, pipeline_root='gs://bucket/root',
                                    experiment='exp', run_name='r1', timeout=5)
  assert run_id == 'run-7' and url.endswith('/#/runs/details/run-7')
  runs = [body for method, path, body in _FakeKfp.requests
          if method == 'POST' and path.startswith('/apis/v2beta1/runs')]
  assert len(runs) == 1
  run = runs[0]
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  sent = json_format.ParseDict(run['pipeline_spec'], pipeline_spec_pb2.PipelineSpec())
  assert sent == json_format.ParseDict(SPEC, pipeline_spec_pb2.PipelineSpec())
  assert run['runtime_config']['pipeline_root'] == 'gs://bucket/root'
  assert run['experiment_id'] == 'exp-1' and run['display_name'] == 'r1'


def test_package_must_exist_and_be_yaml(tmp_path, package):
  with pytest.raises(UserError, match='no such pipeline package'):
    kfp_submit.submit(str(tmp_path / 'missing.yaml'), 'http://localhost:1', 'gs://b/r')
  as_json = tmp_path / 'pipeline.json'
  as_json.write_text('{}')
  with pytest.raises(UserError, match=r'\.yaml'):
    kfp_submit.submit(str(as_json), 'http://localhost:1', 'gs://b/r')


@pytest.fixture
def fake_kfp(monkeypatch):
  monkeypatch.delenv(kfp_submit.TOKEN_ENV, raising=False)
  _FakeKfp.requests, _FakeKfp.seen_headers, _FakeKfp.require_token = [], [], None
  with _Server(_FakeKfp) as server:
    yield server
  _FakeKfp.require_token = None


def _authorizations():
  """{the Authorization header of each request} (a set: one value when all agree)."""
  return {headers.get('authorization') for _, _, headers in _FakeKfp.seen_headers}


def test_token_reaches_the_server_on_every_request(package, fake_kfp, capsys):
  _FakeKfp.require_token = 's3cret'
  status = cli.main(['pipeline', 'submit', '--host', fake_kfp.url, '--package', package,
                     '--token', 's3cret', '--timeout', '5'])
  assert status == 0, capsys.readouterr().err
  assert 'started run run-7' in capsys.readouterr().out
  paths = [path for _, path, _ in _FakeKfp.seen_headers]
  assert any(p.startswith('/apis/v2beta1/healthz') for p in paths)  # our probe, too
  assert any(p.startswith('/apis/v2beta1/runs') for p in paths)
  assert _authorizations() == {'Bearer s3cret'}


def test_token_from_the_environment_and_from_a_file(package, fake_kfp, tmp_path, monkeypatch):
  monkeypatch.setenv(kfp_submit.TOKEN_ENV, 'from-env')
  _FakeKfp.require_token = 'from-env'
  assert cli.main(['pipeline', 'submit', '--host', fake_kfp.url, '--package', package]) == 0
  assert _authorizations() == {'Bearer from-env'}

  # --token-file beats the environment; kfp re-reads the file (its volume credentials).
  token_file = tmp_path / 'token'
  token_file.write_text('from-file\n')
  _FakeKfp.seen_headers, _FakeKfp.require_token = [], 'from-file'
  assert cli.main(['pipeline', 'submit', '--host', fake_kfp.url, '--package', package,
                   '--token-file', str(token_file), '--cookies', 'authservice_session=abc']) == 0
  assert _authorizations() == {'Bearer from-file'}
  assert {headers.get('cookie') for _, _, headers in _FakeKfp.seen_headers} == {
      'authservice_session=abc'}


def test_a_refused_or_missing_token_is_one_line(package, fake_kfp, capsys):
  _FakeKfp.require_token = 'right'
  for flags, message in (
      (['--token', 'wrong'], 'HTTP 401) (the server did not accept the token / cookies given)'),
      ([], 'HTTP 401) (the server wants authentication: --token, --token-file, KFP_TOKEN'),
  ):
    status = cli.main(['pipeline', 'submit', '--host', fake_kfp.url, '--package', package,
                       '--timeout', '5'] + flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert message in err[0] and 'the Kubeflow Pipelines API refused the request' in err[0]


@pytest.mark.parametrize('flags, message', [
    (['--token-file', '{tmp}/missing'], '--token-file {tmp}/missing: no such token file'),
    (['--token-file', '{tmp}'], '--token-file {tmp}: is a directory, not a token file'),
    (['--token-file', '{tmp}/empty'], '--token-file {tmp}/empty: the token file is empty'),
    (['--token', 'a', '--token-file', '{tmp}/empty'], '--token and --token-file exclude each other'),
    (['--token', 'a\nb'], '--token: holds a line break or control character'),
    (['--ssl-ca-cert', '{tmp}/ca.pem'], '--ssl-ca-cert {tmp}/ca.pem: no such CA certificate file'),
    (['--proxy', 'proxy:3128'], '--proxy proxy:3128: must be an http:// or https:// URL'),
])
def test_bad_credentials_are_one_line_errors_before_any_request(
    package, fake_kfp, tmp_path, capsys, flags, message):
  (tmp_path / 'empty').write_text('  \n')
  flags = [flag.replace('{tmp}', str(tmp_path)) for flag in flags]
  status = cli.main(['pipeline', 'submit', '--host', fake_kfp.url, '--package', package] + flags)
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(err) == 1, err
  assert message.replace('{tmp}', str(tmp_path)) in err[0]
  assert not _FakeKfp.seen_headers  # refused before the probe


def test_auth_becomes_kfp_client_arguments(tmp_path):
  import inspect  # pylint: disable=g-import-not-at-top
  import kfp  # pylint: disable=g-import-not-at-top
  from kfp.client import set_volume_credentials  # pylint: disable=g-import-not-at-top
  accepted = set(inspect.signature(kfp.Client.__init__).parameters)
  (tmp_path / 'ca.pem').write_text('PEM')
  (tmp_path / 'token').write_text('t')
  by_token = kfp_submit.Auth(token=' t ', cookies='a=b', proxy='http://p:3128',
                             ssl_ca_cert=str(tmp_path / 'ca.pem')).checked().client_arguments()
  assert by_token == {'existing_token': 't', 'cookies': 'a=b', 'proxy': 'http://p:3128',
                      'ssl_ca_cert': str(tmp_path / 'ca.pem')}
  by_file = kfp_submit.Auth(token_file=str(tmp_path / 'token')).checked().client_arguments()
  assert isinstance(by_file['credentials'],
                    set_volume_credentials.ServiceAccountTokenVolumeCredentials)
  assert set(by_token) | set(by_file) <= accepted


def test_resource_flags_with_a_compiled_package_are_refused(package, fake_kfp, capsys):
  status = cli.main(['pipeline', 'submit', '--host', fake_kfp.url, '--package', package,
                     '--trainer-gpus', '1', '--cpu-request', '2'])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(err) == 1, err
  assert '--trainer-gpus, --cpu-request: resources are compiled into the package' in err[0]
  assert not _FakeKfp.seen_headers
