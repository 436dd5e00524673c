"""The Kubeflow build: a PipelineSpec kfp.Client reads, with the local DAG, BaselinePicker for the
Resolver."""
import copy
import json

import pytest
import yaml
from google.protobuf import json_format

from entropy_coder import cli
from entropy_coder.errors import UserError
from entropy_coder.pipeline import configs
from entropy_coder.pipeline import kfp_local
from entropy_coder.pipeline import kubeflow_runner
from entropy_coder.pipeline import pipeline

IMAGE = 'registry.example/entropy-coder:test'
ROOT = 'gs://bucket/entropy'
ENTRYPOINT = ['python', '-m', 'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor']
SETTINGS = configs.RunSettings(count=500, train_steps=7, max_code_length=0.9,
                               max_real_over_theory=0.05)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('kfp') / 'pipeline.yaml')
  kubeflow_runner.compile_pipeline(path, SETTINGS.checked(), image=IMAGE, pipeline_root=ROOT)
  return path


def _local_dag(tmp_path):
  """{node id: {input key: (producer id, output key)}} and executor class paths, run locally."""
  dag = pipeline.create_pipeline(
      pipeline_name='p', pipeline_root=str(tmp_path), model_config=SETTINGS.model_config,
      train_config=SETTINGS.train_config, train_steps=SETTINGS.train_steps,
      serving_model_dir=str(tmp_path / 'serving'), count=SETTINGS.count,
      code_shape=SETTINGS.code_shape, seed=SETTINGS.seed,
      real_compression_check=SETTINGS.real_compression_check, use_resolver=True)
  edges, executors = {}, {}
  for node in dag.components:
    edges[node.id] = {}
    for key, channel in node.inputs.items():
      # None: the Resolver's own inputs (queries of ML-Metadata, no producer in this DAG).
      producer = next(iter(channel.get_data_dependent_node_ids()), None)
      # Output channels name their key; the Resolver's resolved channel is marked as such.
      edges[node.id][key] = (producer, getattr(channel, 'output_key', 'resolved'))
    spec = getattr(node, 'executor_spec', None)
    executor_class = getattr(spec, 'executor_class', None)
    if executor_class is not None:
      executors[node.id] = f'{executor_class.__module__}.{executor_class.__name__}'
  return edges, executors


def test_kfp_client_reads_it_as_a_pipeline_spec_2_1(compiled):
  from kfp.client import client as kfp_client  # pylint: disable=g-import-not-at-top
  document = kfp_client._extract_pipeline_yaml(compiled)  # pylint: disable=protected-access
  assert document.pipeline_spec.schema_version == '2.1.0'
  assert document.pipeline_spec.pipeline_info.name == configs.PIPELINE_NAME
  assert kfp_local.load_pipeline_spec(compiled) == document.pipeline_spec


def test_tasks_and_edges_are_the_local_dag_with_baseline_picker_for_the_resolver(compiled, tmp_path):
  spec = kfp_local.load_pipeline_spec(compiled)
  local_edges, local_executors = _local_dag(tmp_path)
  resolver = pipeline.RESOLVER_ID
  assert local_edges['Evaluator']['baseline_model'] == (resolver, 'model')
  expected = {node: {key: source for key, source in inputs.items() if source[0] != resolver}
              for node, inputs in local_edges.items() if node != resolver}
  # The baseline comes from the newest push instead (a container task open-source KFP runs).
  expected[pipeline.BASELINE_PICKER_ID] = {}
  expected['Evaluator']['baseline_model'] = (pipeline.BASELINE_PICKER_ID, 'baseline')
  compiled_edges = {
      name: {key: (channel.task_output_artifact.producer_task,
                   channel.task_output_artifact.output_artifact_key)
             for key, channel in task.inputs.artifacts.items()}
      for name, task in spec.root.dag.tasks.items()}
  assert compiled_edges == expected
  # The push needs both blessings: TFMA's and the real round trip's.
  assert compiled_edges['Pusher']['model_blessing'] == ('Evaluator', 'blessing')
  assert compiled_edges['Pusher']['infra_blessing'] == ('RealCompressionCheck', 'blessing')
  assert kfp_local.task_order(spec).index('Trainer') < kfp_local.task_order(spec).index('Evaluator')

  from entropy_coder.components import baseline_picker  # pylint: disable=g-import-not-at-top
  from tfx.components.evaluator import executor as evaluator_executor  # pylint: disable=g-import-not-at-top
  assert issubclass(baseline_picker.BaselineAwareEvaluatorExecutor, evaluator_executor.Executor)
  assert local_executors['Evaluator'] == 'tfx.components.evaluator.executor.Executor'
  local_executors['Evaluator'] = (
      'entropy_coder.components.baseline_picker.BaselineAwareEvaluatorExecutor')
  local_executors[pipeline.BASELINE_PICKER_ID] = (
      'entropy_coder.components.baseline_picker.BaselinePicker_Executor')
  executors = json_format.MessageToDict(spec.deployment_spec)['executors']
  for name, task in spec.root.dag.tasks.items():
    container = executors[spec.components[task.component_ref.name].executor_label]['container']
    assert container['image'] == IMAGE
    assert container['command'] == ENTRYPOINT
    args = container['args']
    assert args[args.index('--executor_class_path') + 1] == local_executors[name]
    assert args[args.index('--json_serialized_invocation_args') + 1] == '{{$}}'


def test_baseline_picker_reads_the_push_destination_and_is_never_cached(compiled):
  spec = kfp_local.load_pipeline_spec(compiled)
  tasks = spec.root.dag.tasks
  picker = tasks[pipeline.BASELINE_PICKER_ID]
  assert (picker.inputs.parameters['serving_model_dir'].runtime_value.constant.string_value
          == f'{ROOT}/{configs.SERVING_MODEL_DIRNAME}')
  # Its answer depends on earlier runs' pushes, not on its inputs: KFP must not cache it.
  assert not picker.caching_options.enable_cache
  assert all(task.caching_options.enable_cache for name, task in tasks.items()
             if name != pipeline.BASELINE_PICKER_ID)


def test_parameters_carry_the_settings(compiled):
  spec = kfp_local.load_pipeline_spec(compiled)
  tasks = spec.root.dag.tasks

  def constant(task, key):
    return tasks[task].inputs.parameters[key].runtime_value.constant.string_value

  custom = json.loads(constant('Trainer', 'custom_config'))
  assert custom['model_config'] == SETTINGS.model_config
  assert custom['train_config'] == SETTINGS.train_config
  assert json.loads(constant('Trainer', 'train_args')) == {'num_steps': 7}
  # The Trainer tracks the eval split during the run and exports its best evaluation.
  assert custom['eval_every'] == configs.trainer_eval_every(7) == 1
  push = json.loads(constant('Pusher', 'push_destination'))
  assert push['filesystem']['base_directory'] == f'{ROOT}/{configs.SERVING_MODEL_DIRNAME}'
  eval_config = json.loads(constant('Evaluator', 'eval_config'))
  (threshold,) = [m['threshold'] for m in eval_config['metrics_specs'][0]['metrics']
                  if m['class_name'] == 'CodeLength']
  assert threshold['value_threshold']['upper_bound'] == 0.9
  check = tasks['RealCompressionCheck'].inputs.parameters['max_real_over_theory']
  assert check.runtime_value.constant.number_value == 0.05
  query = json.loads(json.loads(constant('SyntheticCodeGen', 'input_config'))['splits'][0]['pattern'])
  assert query['count'] == 500


def test_only_yaml_output_is_written(tmp_path):
  with pytest.raises(UserError, match=r'\.yaml or \.yml'):
    kubeflow_runner.compile_pipeline(str(tmp_path / 'p.json'), SETTINGS, image=IMAGE)
  assert not (tmp_path / 'p.json').exists()


def test_cli_compile_writes_the_file(tmp_path, capsys):
  out = tmp_path / 'cli.yaml'
  status = cli.main(['pipeline', 'compile', '--output', str(out), '--image', IMAGE,
                     '--pipeline-root', ROOT, '--count', '123'])
  assert status == 0 and out.exists()
  assert str(out) in capsys.readouterr().out
  spec = kfp_local.load_pipeline_spec(str(out))
  pattern = json.loads(spec.root.dag.tasks['SyntheticCodeGen'].inputs.parameters['input_config']
                       .runtime_value.constant.string_value)['splits'][0]['pattern']
  assert json.loads(pattern)['count'] == 123


def test_a_resolver_build_is_refused_before_any_task_runs(tmp_path):
  """Why the Kubeflow build drops the Resolver: it compiles to non-container executors."""
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # pylint: disable=g-import-not-at-top
  dag = pipeline.create_pipeline(
      pipeline_name='p', pipeline_root=str(tmp_path / 'root'), model_config=SETTINGS.model_config,
      train_config=SETTINGS.train_config, train_steps=1, serving_model_dir=str(tmp_path / 's'),
      count=10, code_shape=(4, 4, 2), seed=0, use_resolver=True)
  kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=IMAGE,
                                                       use_pipeline_spec_2_1=True),
      output_dir=str(tmp_path), output_filename='with_resolver.yaml').run(dag)
  spec_path = str(tmp_path / 'with_resolver.yaml')
  executors = json_format.MessageToDict(kfp_local.load_pipeline_spec(spec_path).deployment_spec)
  assert sum('resolver' in e for e in executors['executors'].values()) == 2
  with pytest.raises(UserError, match='resolver executor, not a container'):
    kfp_local.run_compiled(spec_path, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def _broken(document, how):
  """A copy of a compiled spec (as YAML data) broken in one way."""
  document = copy.deepcopy(document)
  tasks = document['root']['dag']['tasks']
  if how == 'missing_component':
    del document['components'][tasks['Trainer']['componentRef']['name']]
  elif how == 'parameter_not_constant':
    tasks['Trainer']['inputs']['parameters']['custom_config'] = {'componentInputParameter': 'x'}
  elif how == 'cycle':
    tasks['SyntheticCodeGen']['dependentTasks'] = ['Pusher']
  elif how == 'unknown_producer':
    tasks['Trainer']['inputs']['artifacts']['examples']['taskOutputArtifact']['producerTask'] = 'Nope'
  elif how == 'unknown_output':
    tasks['Trainer']['inputs']['artifacts']['examples']['taskOutputArtifact'][
        'outputArtifactKey'] = 'nope'
  elif how == 'input_not_a_task_output':
    tasks['Trainer']['inputs']['artifacts']['examples'] = {'componentInputArtifact': 'x'}
  elif how == 'vertex_pipeline_job':
    document = {'displayName': 'p', 'pipelineSpec': document, 'runtimeConfig': {}}
  elif how == 'no_tasks':
    document['root']['dag']['tasks'] = {}
  return document


@pytest.mark.parametrize('how, message', [
    ('missing_component', 'task Trainer runs component "Trainer", which the spec does not define'),
    ('parameter_not_constant', 'task Trainer: parameter "custom_config" is not a constant'),
    ('cycle', 'wait on each other (a cycle)'),
    ('unknown_producer', "wait on tasks it does not have: ['Nope']"),
    ('unknown_output', 'task Trainer: input "examples" is output "nope" of task '),
    ('input_not_a_task_output', 'task Trainer: input "examples" does not come from a task output'),
    ('vertex_pipeline_job', 'is a Vertex PipelineJob'),
    ('no_tasks', 'the pipeline has no tasks'),
])
def test_cli_run_compiled_refuses_a_bad_spec_in_one_line_before_running(
    compiled, tmp_path, capsys, how, message):
  with open(compiled, encoding='utf-8') as f:
    document = yaml.safe_load(f)
  spec_path = tmp_path / f'{how}.yaml'
  spec_path.write_text(yaml.safe_dump(_broken(document, how)))
  root = tmp_path / 'root'
  status = cli.main(['pipeline', 'run-compiled', str(spec_path), '--pipeline-root', str(root)])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(err) == 1, err
  assert err[0].startswith(f'entropy-coder pipeline: error: {spec_path}: ')
  assert message in err[0]
  assert not root.exists()  # refused before any folder or task


def test_cli_run_compiled_names_a_missing_or_unreadable_spec_and_a_remote_root(tmp_path, capsys):
  not_yaml = tmp_path / 'not_yaml.yaml'
  not_yaml.write_text('tasks: [')
  root = str(tmp_path / 'root')
  assert cli.main(['pipeline', 'run-compiled', str(tmp_path / 'nope.yaml'),
                   '--pipeline-root', root]) == 2
  assert cli.main(['pipeline', 'run-compiled', str(not_yaml), '--pipeline-root', root]) == 2
  assert cli.main(['pipeline', 'run-compiled', str(not_yaml), '--pipeline-root', ROOT]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3
  assert err[0].endswith('nope.yaml: no such pipeline file')
  assert 'not_yaml.yaml: not a YAML pipeline' in err[1]
  assert f'--pipeline-root {ROOT}: must be a local directory' in err[2]


def _kfp_sdk_resources(tmp_path):
  """The `resources` kfp 2.0.1's own compiler writes for the same requests, limits and GPUs."""
  from kfp import compiler, dsl  # pylint: disable=g-import-not-at-top

  @dsl.container_component
  def task():
    return dsl.ContainerSpec(image=IMAGE, command=['true'])

  @dsl.pipeline(name='p')
  def sdk_pipeline():
    task().set_cpu_request('4').set_memory_request('8Gi').set_memory_limit('16G') \
        .set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(2)

  path = str(tmp_path / 'sdk.yaml')
  compiler.Compiler().compile(sdk_pipeline, path)
  with open(path, encoding='utf-8') as f:
    (executor,) = yaml.safe_load(f)['deploymentSpec']['executors'].values()
  return executor['container']['resources']


def test_cli_compile_writes_resources_in_the_kfp_sdk_form(tmp_path, capsys):
  out = tmp_path / 'gpu.yaml'
  status = cli.main(['pipeline', 'compile', '--output', str(out), '--image', IMAGE,
                     '--pipeline-root', ROOT, '--trainer-gpus', '2', '--cpu-request', '500m',
                     '--cpu-request', 'Trainer=4', '--memory-request', 'Trainer=8Gi',
                     '--memory-limit', 'Trainer=16G', '--memory-request', 'Evaluator=2G'])
  assert status == 0, capsys.readouterr().err
  # Read back as kfp.Client reads a package, then as the PipelineSpec proto.
  from kfp.client import client as kfp_client  # pylint: disable=g-import-not-at-top
  spec = kfp_client._extract_pipeline_yaml(str(out)).pipeline_spec  # pylint: disable=protected-access
  assert spec == kfp_local.load_pipeline_spec(str(out))

  def resources(task):
    label = spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label
    return spec.deployment_spec.fields['executors'].struct_value.fields[label] \
        .struct_value.fields['container'].struct_value.fields.get('resources')

  trainer = json_format.MessageToDict(resources('Trainer'))
  assert trainer == _kfp_sdk_resources(tmp_path)  # exactly what kfp's compiler writes
  assert trainer == {'accelerator': {'count': '2', 'type': 'nvidia.com/gpu'}, 'cpuRequest': 4.0,
                     'memoryRequest': pytest.approx(8 * 2**30 / 1e9), 'memoryLimit': 16.0}
  # And it parses as the container's typed ResourceSpec of pipeline_spec_pb2.
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  typed = json_format.ParseDict(
      trainer, pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec())
  assert typed.accelerator.count == 2 and typed.accelerator.type == 'nvidia.com/gpu'
  assert typed.cpu_request == 4.0 and typed.memory_limit == 16.0
  assert json_format.MessageToDict(resources('Evaluator')) == {'cpuRequest': 0.5,
                                                               'memoryRequest': 2.0}
  assert json_format.MessageToDict(resources('Pusher')) == {'cpuRequest': 0.5}


def test_no_resource_flags_write_no_resources(compiled):
  with open(compiled, encoding='utf-8') as f:
    executors = yaml.safe_load(f)['deploymentSpec']['executors']
  assert not any('resources' in e['container'] for e in executors.values())


@pytest.mark.parametrize('flags, message', [
    (['--cpu-request', 'Trainer=lots'], '--cpu-request Trainer=lots: Invalid cpu string'),
    (['--memory-request', '4GB'], '--memory-request 4GB: Invalid memory string'),
    (['--cpu-request', 'Trainr=2'], "resources for task(s) ['Trainr'], which the pipeline"),
    (['--trainer-gpus', '-1'], '--trainer-gpus -1: must be an int >= 0'),
    (['--cpu-request', '4', '--cpu-limit', 'Trainer=2'],
     '--cpu-request is above --cpu-limit for task Trainer (4 > 2 CPUs)'),
])
def test_bad_resource_flags_are_one_line_errors(tmp_path, capsys, flags, message):
  out = tmp_path / 'bad.yaml'
  status = cli.main(['pipeline', 'compile', '--output', str(out), '--image', IMAGE,
                     '--pipeline-root', ROOT] + flags)
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(err) == 1, err
  assert message in err[0]
  assert not out.exists()
