"""`entropy-coder pipeline run | compile | submit | run-compiled`: the TFX pipeline, locally or
on Kubeflow.

* `run`: the whole DAG on this machine (entropy_coder.pipeline.local_runner), then a summary
  of where the metrics and the pushed model are and the headline figures. `make run` = this.
* `compile`: the same DAG as a Kubeflow Pipelines 2 PipelineSpec YAML.
* `submit`: uploads a compiled YAML (or compiles one now) and starts a run on a KFP server.
* `run-compiled`: runs a compiled YAML here, task by task through each task's own container
  command (entropy_coder.pipeline.kfp_local): debugging a Kubeflow build without a cluster.

The first three take the same settings: the embedded demo default, `--config FILE` over it,
then the flags over that.
"""
import contextlib
import logging
import os
import sys
import tempfile
import time

from entropy_coder import push_gates
from entropy_coder import uris
from entropy_coder.errors import UserError
# Light modules (no TF, Beam or TFX at their top level): the defaults shown in --help.
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import kfp_resources
from entropy_coder.pipeline import kfp_submit


def register(subparsers):
  parser = subparsers.add_parser(
      'pipeline', help='run the TFX pipeline locally, or compile / submit it to Kubeflow',
      description='The TFX pipeline: codes -> Trainer -> Evaluator (TFMA code length, '
      'blessing) -> Pusher, plus a real-compression check.')
  actions = parser.add_subparsers(dest='action', metavar='ACTION')
  actions.required = True

  run_parser = actions.add_parser(
      'run', help='run the pipeline here (BeamDagRunner, sqlite ML-Metadata)',
      description='Runs the pipeline on this machine; a second run with nothing changed '
      f're-uses every cached output. Default: the ~{configs.DEMO_MINUTES}-minute demo.')
  run_parser.add_argument('--pipeline-root', default=configs.DEFAULT_PIPELINE_ROOT,
                          help=f'where artifacts, metadata.sqlite and serving_model/ go '
                          f'(default {configs.DEFAULT_PIPELINE_ROOT})')
  _add_settings_arguments(run_parser)
  run_parser.set_defaults(func=run)

  compile_parser = actions.add_parser(
      'compile', help='compile the pipeline for Kubeflow Pipelines 2 (PipelineSpec YAML)',
      description='Writes a PipelineSpec 2.1 YAML that kfp.Client uploads. In Kubeflow builds '
      'the baseline is the newest pushed model (BaselinePicker), not the latest-blessed-model '
      'Resolver, which open-source KFP cannot run (docs/PIPELINE.md).')
  compile_parser.add_argument('--output', required=True, help='the .yaml file to write')
  _add_kubeflow_arguments(compile_parser)
  _add_settings_arguments(compile_parser)
  compile_parser.set_defaults(func=compile_)

  submit_parser = actions.add_parser(
      'submit', help='upload and start a run on a Kubeflow Pipelines server',
      description='Starts a run of a compiled pipeline (--package) or of one compiled now '
      'from the settings flags.')
  submit_parser.add_argument('--host', required=True,
                             help='KFP API endpoint, e.g. http://localhost:8080')
  submit_parser.add_argument('--experiment', default=kfp_submit.DEFAULT_EXPERIMENT,
                             help=f'experiment name (default {kfp_submit.DEFAULT_EXPERIMENT})')
  submit_parser.add_argument('--namespace', help='Kubernetes namespace (multi-user deployments)')
  submit_parser.add_argument('--package', help='compiled .yaml (default: compile now)')
  submit_parser.add_argument('--run-name', help='name of the run in the KFP UI')
  submit_parser.add_argument('--timeout', type=float, default=30.0,
                             help='seconds to wait for the server (default 30)')
  auth = submit_parser.add_argument_group(
      'authentication (kfp.Client\'s existing_token, credentials, cookies, proxy, ssl_ca_cert)')
  auth.add_argument('--token', help=f'bearer token (default: the environment\'s '
                     f'{kfp_submit.TOKEN_ENV}, which keeps it out of the process list)')
  auth.add_argument('--token-file', help='file holding the bearer token, re-read on every '
                     'request (e.g. a projected service-account token)')
  auth.add_argument('--cookies', help="session cookies, 'name=value; ...' (e.g. the "
                    'authservice_session cookie of a Dex login)')
  auth.add_argument('--proxy', help='HTTP(S) proxy URL to reach the API through')
  auth.add_argument('--ssl-ca-cert', help='PEM CA bundle that signed the server\'s certificate')
  _add_kubeflow_arguments(submit_parser)
  _add_settings_arguments(submit_parser)
  submit_parser.set_defaults(func=submit)

  local_parser = actions.add_parser(
      'run-compiled', help='run a compiled Kubeflow pipeline here, task by task (no cluster)',
      description='Runs every container task of a compiled PipelineSpec YAML on this machine, in '
      'DAG order, through its own command (this Python stands in for the image\'s), chaining '
      'the tasks through their executor outputs as the KFP launcher does. Compile with the '
      'same --pipeline-root so the push destination is local too. No pods, caching, '
      'ML-Metadata or retries: it checks what the image would run, not the cluster.')
  local_parser.add_argument('spec', metavar='SPEC', help='compiled .yaml (pipeline compile)')
  local_parser.add_argument('--pipeline-root', required=True,
                            help='local directory: each run\'s artifacts and task logs go to '
                            'run-<N>/ under it (the next free N); the compiled push destination '
                            'is shared by the runs')
  local_parser.add_argument('--json', action='store_true',
                            help='print every output artifact (uri, metadata) as JSON')
  local_parser.set_defaults(func=run_compiled)


def _add_settings_arguments(parser):
  group = parser.add_argument_group('pipeline settings (default: the embedded demo)')
  group.add_argument('--config', help='JSON file of settings (model_config, train_config, count, '
                     'code_shape, seed, train_steps, max_code_length, change_tolerance, '
                     'max_real_over_theory, ...), or a '
                     'folder with model_config.json / train_config.json such as configs/synthetic')
  group.add_argument('--count', type=int, help='synthetic codes to generate')
  group.add_argument('--train-steps', type=int, help='Trainer step limit')
  group.add_argument('--codes-dir', help="a folder of the original's .npz codes to import instead "
                     'of generating synthetic ones')
  group.add_argument('--images', metavar='DIR',
                     help='a folder of pictures to code with the image encoder (ImageCodeImport) '
                     'instead of synthetic codes; model_config takes its layer_depth (bits per '
                     'iteration) and layer_count (iterations) from the encoder')
  group.add_argument('--encoder', metavar='DIR',
                     help='with --images: a trained image encoder (entropy-coder train-encoder); '
                     'default for `run`: <pipeline root>/image_encoder, trained on first use')
  group.add_argument('--channel-causal', action='store_true', default=None,
                     help='model extension: a bit also sees the earlier bits of its own pixel')
  group.add_argument('--max-code-length', type=float,
                     help=f'bless only below this code length, bits per bit (default '
                     f'{push_gates.DEFAULT_MAX_CODE_LENGTH})')
  group.add_argument('--max-real-over-theory', type=float,
                     help="push only if the real bitstream's payload is at most this much "
                     "(relative) above the model's code length (default "
                     f"{push_gates.DEFAULT_MAX_REAL_OVER_THEORY} = "
                     f"{100 * push_gates.DEFAULT_MAX_REAL_OVER_THEORY:g} %%)")


def _add_kubeflow_arguments(parser):
  parser.add_argument('--image', default=configs.DEFAULT_IMAGE,
                      help=f'container image with this project installed (default '
                      f'{configs.DEFAULT_IMAGE}; see the Dockerfile)')
  parser.add_argument('--pipeline-root', default=configs.DEFAULT_KFP_PIPELINE_ROOT,
                      help='artifact root the containers can write (gs://, s3:// or a shared '
                      'volume path); the Pusher pushes under <root>/serving_model')
  group = parser.add_argument_group(
      'resources of the compiled tasks (written as kfp 2.0.1 writes them; AMOUNT applies to every '
      'task, TASK=AMOUNT to one, e.g. Trainer=4; repeatable)')
  group.add_argument('--trainer-gpus', type=int, default=0, metavar='N',
                     help=f'GPUs for the {kfp_resources.TRAINER_TASK} task (accelerator count; '
                     'default 0)')
  group.add_argument('--gpu-type', default=kfp_resources.DEFAULT_GPU_TYPE,
                     help='accelerator type of --trainer-gpus (default '
                     f'{kfp_resources.DEFAULT_GPU_TYPE})')
  group.add_argument('--cpu-request', action='append', metavar='[TASK=]CPU',
                     help="CPU request, kfp's form: '2', '500m'")
  group.add_argument('--memory-request', action='append', metavar='[TASK=]MEM',
                     help="memory request, kfp's form: '4G', '512Mi'")
  group.add_argument('--cpu-limit', action='append', metavar='[TASK=]CPU', help='CPU limit')
  group.add_argument('--memory-limit', action='append', metavar='[TASK=]MEM', help='memory limit')


def settings_from_args(args):
  """Demo default <- --config <- flags, validated before anything runs."""
  settings = configs.RunSettings()
  if args.config:
    settings = configs.load_settings(args.config, settings)
  train_steps = args.train_steps
  if train_steps is None and args.images and settings.train_steps == configs.RunSettings.train_steps:
    train_steps = configs.IMAGES_TRAIN_STEPS  # pictures: a smaller default (configs.py)
  settings = settings.replace(count=args.count, train_steps=train_steps,
                              codes_dir=args.codes_dir, images_dir=args.images,
                              encoder_dir=args.encoder, max_code_length=args.max_code_length,
                              max_real_over_theory=args.max_real_over_theory)
  if args.channel_causal:
    settings = settings.replace(model_config={**settings.model_config, 'channel_causal': True})
  return settings.checked('pipeline settings')


def with_image_encoder(settings, pipeline_root=None):
  """Settings with `images_dir`: the encoder ready (the default one trained into the pipeline
  root on first use when `pipeline_root` is given and no encoder is), and model_config's
  layer_depth / layer_count set to the encoder's bits per iteration / iterations."""
  if settings.images_dir is None:
    return settings
  from entropy_coder.image_encoder import config as encoder_config  # pylint: disable=g-import-not-at-top
  encoder_dir = settings.encoder_dir
  if encoder_dir is None:
    if pipeline_root is None:
      raise UserError('--images: give --encoder, a trained encoder directory the pipeline\'s '
                      'containers can read')
    from entropy_coder.image_encoder import default_encoder  # pylint: disable=g-import-not-at-top
    encoder_dir = default_encoder.ensure_trained(default_encoder.default_encoder_dir(pipeline_root))
  config = encoder_config.read_encoder_json(encoder_dir)['config']
  model_config = dict(settings.model_config, layer_depth=config.bits_per_iteration,
                      layer_count=config.iterations)
  return settings.replace(encoder_dir=encoder_dir, model_config=model_config).checked(
      'pipeline settings')


def run(args):
  from entropy_coder.pipeline import inspect_runs  # pylint: disable=g-import-not-at-top
  from entropy_coder.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  settings = settings_from_args(args)
  _check_pipeline_root(args.pipeline_root)
  settings = with_image_encoder(settings, args.pipeline_root)
  source = (f'codes from {settings.codes_dir}' if settings.codes_dir else
            f'pictures from {settings.images_dir} (encoder {settings.encoder_dir})'
            if settings.images_dir else
            f'{settings.count} synthetic codes {list(settings.code_shape)}')
  print(f'pipeline root {os.path.abspath(args.pipeline_root)}: {source}, '
        f'{settings.train_steps} training steps', file=sys.stderr, flush=True)
  with _component_progress():
    paths = local_runner.run(settings, args.pipeline_root)
  evaluation = inspect_runs.latest_evaluation(paths.root)
  print(summary(evaluation, paths))
  return 0


def _check_pipeline_root(root):
  """--pipeline-root must be (or become) a writable directory: checked before any component."""
  from entropy_coder.errors import describe  # pylint: disable=g-import-not-at-top
  if os.path.exists(root) and not os.path.isdir(root):
    raise UserError(describe(f'--pipeline-root {root}', 'exists and is not a directory'))
  try:
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryFile(dir=root):
      pass
  except OSError as e:
    raise UserError(describe(f'--pipeline-root {root}', f'cannot be written ({e.strerror})')) from None


def summary(evaluation, paths):
  from entropy_coder.commands import metrics as metrics_command  # pylint: disable=g-import-not-at-top
  code_length = evaluation.metrics.get('code_length')
  ratio = evaluation.metrics.get('compression_ratio')
  per_code = evaluation.metrics.get('code_length_per_code_mean')
  lines = [
      f'code length        {code_length:.4f} bits/bit on the eval split (pooled: total bits / '
      'total code bits)' if code_length is not None else 'code length        (not computed)',
      f'per code mean      {per_code:.4f} bits/bit (each code weighing the same)'
      if per_code is not None else '',
      f'compression ratio  {ratio:.4f}' if ratio is not None else '',
      ('floor              ' + metrics_command.format_floor(evaluation)
       if metrics_command.format_floor(evaluation) else ''),
      'blessed            ' + {True: 'yes', False: 'NO', None: 'unknown'}[evaluation.blessed]
      + ('' if not evaluation.failed_checks else ' (' + '; '.join(evaluation.failed_checks) + ')'),
      ('real bitstream     ' + metrics_command.format_real_compression(evaluation.real_compression)
       .split(' ', 2)[2] if evaluation.real_compression else ''),
      ('round trip         ' + metrics_command.format_round_trip(evaluation.real_compression)
       if evaluation.real_compression else ''),
      *metrics_command.format_training(evaluation, width=19),
      f'metrics (TFMA)     {evaluation.evaluation_uri}',
      'pushed model       ' + (evaluation.pushed_model_uri
                               or f'none ({metrics_command.why_not_pushed(evaluation)})'),
      f'all pushes         {paths.serving_model_dir}',
      f'ML-Metadata        {paths.metadata_path}',
      f'more: entropy-coder metrics {paths.root}',
  ]
  return '\n'.join(line for line in lines if line)


def resources_from_args(args):
  return kfp_resources.parse_resources(
      cpu_request=args.cpu_request, memory_request=args.memory_request,
      cpu_limit=args.cpu_limit, memory_limit=args.memory_limit,
      trainer_gpus=args.trainer_gpus, gpu_type=args.gpu_type)


def compile_(args):
  from entropy_coder import output_files  # pylint: disable=g-import-not-at-top
  from entropy_coder.pipeline import kubeflow_runner  # pylint: disable=g-import-not-at-top
  settings = with_image_encoder(settings_from_args(args))
  resources = resources_from_args(args)
  output_files.check_output_file(args.output, overwrite=True, flag='--output')
  path = kubeflow_runner.compile_pipeline(args.output, settings, image=args.image,
                                          pipeline_root=args.pipeline_root, resources=resources)
  print(f'compiled {path} (image {args.image}, pipeline root {args.pipeline_root})')
  return 0


def submit(args):
  from entropy_coder.pipeline import kfp_submit  # pylint: disable=g-import-not-at-top
  from entropy_coder.pipeline import kubeflow_runner  # pylint: disable=g-import-not-at-top
  # Credentials first: a bad token file fails before anything is compiled.
  auth = kfp_submit.Auth.from_flags(token=args.token, token_file=args.token_file,
                                    cookies=args.cookies, proxy=args.proxy,
                                    ssl_ca_cert=args.ssl_ca_cert)
  if args.package:
    given = [flag for flag, value in (
        ('--trainer-gpus', args.trainer_gpus), ('--cpu-request', args.cpu_request),
        ('--memory-request', args.memory_request), ('--cpu-limit', args.cpu_limit),
        ('--memory-limit', args.memory_limit)) if value]
    if given:
      raise UserError(f'{", ".join(given)}: resources are compiled into the package; '
                      f'compile {args.package} with them, or drop --package')
  with contextlib.ExitStack() as stack:
    package = args.package
    if not package:
      directory = stack.enter_context(tempfile.TemporaryDirectory())
      package = kubeflow_runner.compile_pipeline(
          os.path.join(directory, 'pipeline.yaml'), with_image_encoder(settings_from_args(args)),
          image=args.image, pipeline_root=args.pipeline_root,
          resources=resources_from_args(args))
    run_id, url = kfp_submit.submit(
        package, args.host, pipeline_root=args.pipeline_root, experiment=args.experiment,
        namespace=args.namespace, run_name=args.run_name, timeout=args.timeout, auth=auth)
  print(f'started run {run_id}: {url}')
  return 0


def run_compiled(args):
  import json  # pylint: disable=g-import-not-at-top
  from entropy_coder.pipeline import kfp_local  # pylint: disable=g-import-not-at-top
  if uris.is_url(args.pipeline_root):
    raise UserError(f'--pipeline-root {args.pipeline_root}: must be a local directory (the '
                    'tasks run on this machine)')
  # The spec first: a bad one fails in one line before any folder is made.
  kfp_local.check_runnable(kfp_local.load_pipeline_spec(args.spec), args.spec)
  _check_pipeline_root(args.pipeline_root)
  run_dir = kfp_local.next_run_dir(args.pipeline_root)
  produced = kfp_local.outputs_as_json(
      kfp_local.run_compiled(args.spec, args.pipeline_root, run_dir=run_dir))
  if args.json:
    print(json.dumps(produced, indent=2, sort_keys=True))
  else:
    print(compiled_run_summary(produced, args.spec, run_dir))
  return 0


def compiled_run_summary(produced, spec, root):
  """One line per output artifact (`root`: the run's folder); blessings, the baseline and the
  push with their verdicts."""
  rows = []
  for task, outputs in produced.items():
    for key, artifact in outputs.items():
      metadata = artifact['metadata']
      notes = []
      if 'blessed' in metadata:
        notes.append('blessed' if metadata['blessed'] == 1 else 'NOT BLESSED')
        if metadata.get('reason'):
          notes[-1] += f': {metadata["reason"]}'
      if 'has_baseline' in metadata:
        notes.append(metadata.get('baseline_source') or
                     ('baseline' if metadata['has_baseline'] == 1 else 'no baseline'))
      if 'pushed' in metadata:
        notes.append(f'pushed to {metadata.get("pushed_destination")}' if metadata['pushed'] == 1
                     else 'not pushed')
      rows.append((f'{task}.{key}', artifact['uri'], '; '.join(notes)))
  width = max((len(name) for name, _, _ in rows), default=0)
  lines = [f'ran {len(produced)} tasks of {spec} under {os.path.abspath(root)}']
  lines += [f'{name.ljust(width)}  {uri}' + (f'  ({notes})' if notes else '')
            for name, uri, notes in rows]
  lines.append(f'logs: {os.path.abspath(root)}/<task>/executor.log')
  return '\n'.join(lines)


class _ProgressHandler(logging.Handler):
  """Turns TFX's per-node log records into one progress line per component."""

  def __init__(self):
    super().__init__(logging.INFO)
    self._start = time.monotonic()
    self._node_start = {}
    self._cached = set()

  def emit(self, record):
    try:
      message = record.getMessage()
    except (TypeError, ValueError):
      return
    elapsed = time.monotonic() - self._start
    if message.startswith('node ') and message.endswith(' is running.'):
      node = message[5:-12]
      self._node_start[node] = time.monotonic()
      self._print(f'[{elapsed:5.0f}s] {node} ...')
      self._current = node
    elif message.startswith('A cached execution '):
      self._cached.add(getattr(self, '_current', None))
    elif message.startswith('node ') and message.endswith(' is finished.'):
      node = message[5:-13]
      took = time.monotonic() - self._node_start.get(node, self._start)
      how = 'cached' if node in self._cached else f'done in {took:.0f}s'
      self._print(f'[{elapsed:5.0f}s] {node} {how}')
    elif message.startswith('Execution ') and message.endswith(' failed.'):
      self._print(f'[{elapsed:5.0f}s] {getattr(self, "_current", "a component")} FAILED')
    elif record.levelno >= logging.WARNING and not _is_noise(message):
      self._print(f'{record.levelname}: {message.splitlines()[0]}')

  @staticmethod
  def _print(line):
    print(line, file=sys.stderr, flush=True)


_NOISE = (
    'property_predicate is not supported',  # TFX's Resolver, every run
    "Couldn't find python-snappy",  # Beam's TFRecord writer, a speed note
    'tf_record_iterator (from tensorflow.python.lib.io.tf_record) is deprecated',  # TFMA's reader
)


def _is_noise(message):
  """Library warnings that every run prints and that say nothing about this run."""
  return any(text in message for text in _NOISE)


class _NoiseFilter(logging.Filter):
  """Drops library noise, and Beam's traceback of a UserError (the CLI prints it as one line)."""

  def filter(self, record):
    if record.exc_info and _is_user_error(record.exc_info[1]):
      return False
    return not _is_noise(record.getMessage())


def _is_user_error(error):
  while error is not None:
    if isinstance(error, UserError):
      return True
    error = error.__cause__ or error.__context__
  return False


@contextlib.contextmanager
def _component_progress():
  """Shows which component runs (and which were cached) instead of TFX's INFO firehose.

  The level is set through absl's verbosity flag, not on the logger: TensorFlow's SavedModel
  code saves and restores that flag around every save
  (tensorflow/python/trackable/autotrackable.py), which would silently reset a level set on the
  logger alone.
  """
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logger = logging.getLogger('absl')
  saved = absl_logging.get_verbosity(), absl_logger.propagate, list(absl_logger.handlers)
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logger.propagate = False
  absl_logger.handlers = [_ProgressHandler()]
  noise_filter = _NoiseFilter()
  noisy = [logging.getLogger(name) for name in
           ('tensorflow', 'apache_beam.io.tfrecordio', 'apache_beam.runners.common')]
  for logger in noisy:
    logger.addFilter(noise_filter)
  try:
    yield
  finally:
    for logger in noisy:
      logger.removeFilter(noise_filter)
    absl_logging.set_verbosity(saved[0])
    absl_logger.propagate = saved[1]
    absl_logger.handlers = saved[2]
