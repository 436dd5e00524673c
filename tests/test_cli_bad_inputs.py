"""Every subcommand with bad inputs: one line on stderr naming the file or flag, exit status 2,
no traceback, and nothing written or half-written (docs: issue "Hardening" §3).

`CASES` is the table: each row runs `entropy_coder.cli.main` in process (TensorFlow is imported
once for the whole table) from inside a shared workspace of good and bad files, and checks

* exit status 2 and nothing on stdout;
* stderr is exactly one line, `entropy-coder[ <command>]: error: ...`, with no traceback;
* the line names the offending file or flag (the row's fragments);
* the workspace is unchanged afterwards: no new file, no changed file, no temporary left over.

Tests run as root here, so a file made unreadable with chmod 000 is still readable; the
"unreadable" rows use a directory where a file is expected instead, which fails for every user.

The tests after the table pin the bugs the issue reported, each one failing before its fix.
"""
import io
import json
import os
import re
import shlex
import shutil
import zipfile

import numpy as np
import pytest

from helpers import REFERENCE_DIR, write_examples_dir, write_tfrecord
from entropy_coder import cli, codec, codes_format, model_files, output_files
from entropy_coder.codec import bitstream
from entropy_coder.codec.engine_weights import build_network
from entropy_coder.data_gen import tfrecord_files
from entropy_coder.errors import UserError
from entropy_coder.trainer.config import ModelConfig

CODE = np.random.default_rng(0).integers(0, 2, (5, 6, 4), dtype=np.uint8)
BOMB_SHAPE = [1000, 1, 1000, 1000, 1]  # 10^9 bits, 125,000,000 packed bytes


def _json(path, value):
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(value, f)


def _npy_header(shape, descr='|u1'):
  buffer = io.BytesIO()
  np.lib.format.write_array_header_1_0(buffer, {'descr': descr, 'fortran_order': False,
                                                'shape': tuple(shape)})
  return buffer.getvalue()


def _npy(array):
  buffer = io.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()


def _write_bombs(ws):
  """Three .npz files declaring a 10^9-bit code: with 4 bytes of codes (the byte count
  disagrees), with a "codes" header that claims 125 MB but holds 4 bytes, and a consistent
  one whose 125 MB of zeros deflate to about 120 KB."""
  shape = np.array(BOMB_SHAPE, np.int64)
  np.savez(os.path.join(ws, 'bomb.npz'), shape=shape, codes=np.zeros(4, np.uint8))
  with zipfile.ZipFile(os.path.join(ws, 'bomb_header.npz'), 'w') as archive:
    archive.writestr('shape.npy', _npy(shape))
    archive.writestr('codes.npy', _npy_header([125_000_000]) + b'\0' * 4)
  with zipfile.ZipFile(os.path.join(ws, 'bomb_zeros.npz'), 'w', zipfile.ZIP_DEFLATED) as archive:
    archive.writestr('shape.npy', _npy(shape))
    with archive.open('codes.npy', 'w', force_zip64=True) as member:
      member.write(_npy_header([125_000_000]))
      block = bytes(1 << 20)
      for _ in range(125_000_000 >> 20):
        member.write(block)
      member.write(bytes(125_000_000 & ((1 << 20) - 1)))


def _example(features):
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  example = example_pb2.Example()
  for key, (kind, values) in features.items():
    getattr(example.features.feature[key], kind).value.extend(values)
  return example.SerializeToString()


@pytest.fixture(scope='module')
def ws(tmp_path_factory):
  """The workspace every row runs in: a model, good inputs, and one file per kind of bad input."""
  ws = str(tmp_path_factory.mktemp('ws'))
  join = lambda *names: os.path.join(ws, *names)  # pylint: disable=unnecessary-lambda-assignment
  weights = dict(np.load(os.path.join(REFERENCE_DIR, 'weights_step25284.npz'), allow_pickle=False))
  config = {'layer_depth': 2, 'layer_count': 8}
  model_files.write_model_files(join('model'), weights, config)
  shutil.copytree(join('model'), join('newer_model'))
  with open(join('newer_model', model_files.MODEL_JSON), encoding='utf-8') as f:
    document = json.load(f)
  document['version'] = model_files.MODEL_FORMAT_VERSION + 1
  _json(join('newer_model', model_files.MODEL_JSON), document)
  other = dict(weights, **{'layer0/brnn/out1x1_b/bias': weights['layer0/brnn/out1x1_b/bias'] + 0.01})
  model_files.write_model_files(join('other_model'), other, config)
  shutil.copytree(join('model'), join('pickled_weights_model'))
  np.savez(join('pickled_weights_model', model_files.WEIGHTS_NPZ),
           **{name: np.array([None], dtype=object) for name in weights})
  os.makedirs(join('unfinished_train', 'checkpoints'))
  os.makedirs(join('empty_dir'))
  os.makedirs(join('pipeline.yaml'))  # a directory with a package's name
  with open(join('a_file.txt'), 'w', encoding='utf-8') as f:
    f.write('a regular file\n')

  codes_format.write_npz(join('sample.npz'), CODE, 2)
  shutil.copy(join('sample.npz'), join('sample_noext'))
  codes_format.write_npz(join('deep.npz'), np.zeros((3, 3, 18), np.uint8), 2)  # 9 layers > 8
  write_tfrecord(join('codes.tfrecord.gz'), [CODE, CODE])
  write_tfrecord(join('plain.tfrecord'), [CODE], gzip=False)
  write_tfrecord(join('deep.tfrecord.gz'), [np.zeros((4, 4, 6), np.uint8)])
  files = model_files.read_model_files(join('model'))
  with open(join('one.nec'), 'wb') as f:
    one = codec.compress([CODE], files)
    f.write(one)
  with open(join('two.nec'), 'wb') as f:
    f.write(codec.compress([CODE, CODE], files))
  with open(join('truncated.nec'), 'wb') as f:
    f.write(one[:-3])
  # Many inputs, one output each: a second file of each name, existing outputs, a .nec that is
  # not called .nec, a directory holding a file that is not codes.
  os.makedirs(join('dup'))
  shutil.copy(join('sample.npz'), join('dup', 'sample.npz'))
  shutil.copy(join('one.nec'), join('dup', 'one.nec'))
  shutil.copy(join('one.nec'), join('one_copy.bin'))
  os.makedirs(join('out_with_nec'))
  shutil.copy(join('one.nec'), join('out_with_nec', 'sample.npz.nec'))
  os.makedirs(join('out_with_restored'))
  shutil.copy(join('sample.npz'), join('out_with_restored', 'one'))
  os.makedirs(join('mixed_dir'))
  shutil.copy(join('sample.npz'), join('mixed_dir', 'a.npz'))
  with open(join('mixed_dir', 'notes.txt'), 'w', encoding='utf-8') as f:
    f.write('not a code\n')

  # Bad .npz files.
  np.savez(join('pickled.npz'), shape=np.array([1, 1, 5, 6, 4]), codes=np.array([{'x': 1}], dtype=object))
  np.savez(join('wrong_keys.npz'), bits=np.packbits(CODE), size=np.array([1, 1, 5, 6, 4]))
  np.savez(join('float_codes.npz'), shape=np.array([1, 1, 2, 2, 2]), codes=np.zeros(1, np.float32))
  np.savez(join('float_shape.npz'), shape=np.array([1.0, 1, 2, 2, 2]), codes=np.zeros(1, np.uint8))
  np.savez(join('zero_shape.npz'), shape=np.array([0, 1, 4, 8, 2]), codes=np.zeros(0, np.uint8))
  np.save(join('array.npy'), np.zeros(4))
  os.replace(join('array.npy'), join('array.npz'))
  with open(join('sample.npz'), 'rb') as f:
    npz_bytes = f.read()
  with open(join('truncated.npz'), 'wb') as f:
    f.write(npz_bytes[:len(npz_bytes) // 2])
  _write_bombs(ws)

  # Bad TFRecords.
  with open(join('garbage.bin'), 'wb') as f:
    f.write(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
  open(join('empty.tfrecord'), 'wb').close()
  with open(join('plain.tfrecord'), 'rb') as f:
    plain = f.read()
  with open(join('truncated.tfrecord'), 'wb') as f:
    f.write(plain[:-6])
  with open(join('codes.tfrecord.gz'), 'rb') as f:
    gz = f.read()
  with open(join('truncated.tfrecord.gz'), 'wb') as f:
    f.write(gz[:len(gz) - 12])
  tfrecord_files.write_tfrecords(join('not_examples.tfrecord'), [b'\xff\x00not a proto' * 3])
  tfrecord_files.write_tfrecords(join('no_code.tfrecord'), [_example(
      {codes_format.FEATURE_SHAPE: ('int64_list', [5, 6, 4])})])
  tfrecord_files.write_tfrecords(join('zero_shape.tfrecord'), [_example(
      {codes_format.FEATURE_CODE: ('bytes_list', [b'']),
       codes_format.FEATURE_SHAPE: ('int64_list', [0, 4, 8])})])
  tfrecord_files.write_tfrecords(join('short_code.tfrecord'), [_example(
      {codes_format.FEATURE_CODE: ('bytes_list', [b'\0']),
       codes_format.FEATURE_SHAPE: ('int64_list', [1000, 1000, 1000])})])

  # Training inputs and configs.
  rng = np.random.default_rng(2)
  write_examples_dir(join('examples'), rng.integers(0, 2, (8, 4, 4, 4), dtype=np.uint8),
                     rng.integers(0, 2, (4, 4, 4, 4), dtype=np.uint8))
  _json(join('model_config.json'), {'layer_depth': 2, 'layer_count': 2})
  _json(join('train_config.json'), {'batch_size': 4, 'learning_rate': 0.1, 'decay_rate': 0.9,
                                    'samples_per_decay': 100})
  for name, value in {
      'mc_wrong_type.json': {'layer_depth': '2', 'layer_count': 2},
      'mc_float.json': {'layer_depth': 2.5, 'layer_count': 2},
      'mc_negative.json': {'layer_depth': -2, 'layer_count': 2},
      'mc_missing.json': {'layer_count': 2},
      'mc_unknown.json': {'layer_depth': 2, 'layer_count': 2, 'layers': 3},
      'mc_list.json': [2, 2],
      'mc_coded1.json': {'layer_depth': 2, 'layer_count': 2, 'coded_layer_count': 1},
      'mc_one_layer.json': {'layer_depth': 2, 'layer_count': 1},
      'mc_depth3.json': {'layer_depth': 3, 'layer_count': 2},
      'tc_wrong_type.json': {'batch_size': '4', 'learning_rate': 0.1, 'decay_rate': 0.9,
                             'samples_per_decay': 100},
      'tc_negative.json': {'batch_size': 4, 'learning_rate': -0.1, 'decay_rate': 0.9,
                           'samples_per_decay': 100},
      'tc_missing.json': {'batch_size': 4, 'learning_rate': 0.1, 'decay_rate': 0.9},
      'ic_wrong_type.json': {'data': 3},
      'ic_missing_file.json': {'data': join('nowhere.tfrecord')},
      'ic_garbage.json': {'data': join('garbage.bin')},
      'settings_wrong_type.json': {'count': '10'},
      'settings_negative.json': {'train_steps': -1},
      'settings_zero_shape.json': {'code_shape': [0, 4, 8]},
      'settings_bad_model.json': {'model_config': {'layer_depth': '2', 'layer_count': 2}},
      'settings_unknown.json': {'steps': 3},
  }.items():
    _json(join(name), value)
  with open(join('not_json.json'), 'w', encoding='utf-8') as f:
    f.write('{"layer_depth": 2,')

  # import-codes inputs.
  for name, bad in (('imports_good', None), ('imports_pickle', 'pickled.npz'),
                    ('imports_wrong_keys', 'wrong_keys.npz')):
    os.makedirs(join(name))
    codes_format.write_npz(join(name, 'a_good.npz'), CODE, 2)
    if bad:
      shutil.copy(join(bad), join(name, 'b_bad.npz'))
    else:
      codes_format.write_npz(join(name, 'b_good.npz'), CODE, 2)

  # metrics inputs.
  os.makedirs(join('damaged_root'))
  with open(join('damaged_root', 'metadata.sqlite'), 'wb') as f:
    f.write(b'\0not sqlite\0' * 100)
  os.makedirs(join('empty_store_root'))
  open(join('empty_store_root', 'metadata.sqlite'), 'wb').close()
  return ws


_TRAIN = ('train --model-config model_config.json --train-config train_config.json '
          '--examples examples --train-dir run --steps 2')
_TRAIN_WITHOUT_CONFIG = ('train --train-config train_config.json --examples examples '
                         '--train-dir run --steps 2')
_IMPORT = 'import-codes --output-dir imported --splits train:1,eval:1'

# (id, command line run inside the workspace, fragments the one error line must contain)
CASES = [
    # top level
    ('no_command', '', ['COMMAND']),
    ('unknown_command', 'frobnicate', ['frobnicate']),
    # generate
    ('generate_shape_zero', 'generate --output-dir out --shape 0,4,8 --count 3', ['--shape', '0,4,8']),
    ('generate_shape_negative', 'generate --output-dir out --shape=-1,4,8 --count 3', ['--shape']),
    ('generate_shape_negative_as_flag', 'generate --output-dir out --shape -1,4,8', ['--shape']),
    ('generate_shape_two_ints', 'generate --output-dir out --shape 4,8', ['--shape']),
    ('generate_shape_huge', 'generate --output-dir out --shape 100000,100000,100000 --count 1',
     ['--shape', 'bits']),
    ('generate_count_zero', 'generate --output-dir out --count 0', ['--count']),
    ('generate_count_negative', 'generate --output-dir out --count -5', ['--count']),
    ('generate_count_not_int', 'generate --output-dir out --count 1e3', ['--count']),
    ('generate_workers_zero', 'generate --output-dir out --num-workers 0', ['--num-workers']),
    ('generate_output_under_file', 'generate --output-dir a_file.txt/out --count 3',
     ['a_file.txt/out']),
    ('generate_output_is_file', 'generate --output-dir a_file.txt --count 3', ['a_file.txt']),
    ('generate_unknown_flag', 'generate --output-dir out --colour red', ['--colour']),
    ('generate_missing_output', 'generate --count 3', ['--output-dir']),
    # sample
    ('sample_output_under_file', 'sample --output a_file.txt/s.npz', ['a_file.txt/s.npz']),
    ('sample_output_is_dir', 'sample --output empty_dir', ['empty_dir']),
    ('sample_shape_zero', 'sample --output s.npz --shape 0,4,8', ['--shape']),
    ('sample_shape_negative', 'sample --output s.npz --shape=4,-4,8', ['--shape']),
    ('sample_shape_huge', 'sample --output s.npz --shape 100000,100000,100000', ['--shape']),
    ('sample_layer_depth_zero', 'sample --output s.npz --layer-depth 0', ['--layer-depth']),
    ('sample_layer_depth_not_dividing', 'sample --output s.npz --layer-depth 3', ['--layer-depth']),
    ('sample_seed_negative', 'sample --output s.npz --seed=-1', ['--seed']),
    # import-codes
    ('import_input_missing', f'{_IMPORT} --input-dir nowhere', ['nowhere']),
    ('import_input_is_file', f'{_IMPORT} --input-dir a_file.txt', ['a_file.txt']),
    ('import_input_without_npz', f'{_IMPORT} --input-dir empty_dir', ['empty_dir']),
    ('import_pickle', f'{_IMPORT} --input-dir imports_pickle', ['imports_pickle/b_bad.npz', 'pickle']),
    ('import_wrong_keys', f'{_IMPORT} --input-dir imports_wrong_keys',
     ['imports_wrong_keys/b_bad.npz', 'keys']),
    ('import_output_under_file', 'import-codes --input-dir imports_good --splits train:1,eval:1 '
     '--output-dir a_file.txt/out', ['a_file.txt/out']),
    ('import_output_is_file', 'import-codes --input-dir imports_good --splits train:1,eval:1 '
     '--output-dir a_file.txt', ['a_file.txt']),
    ('import_output_is_input', 'import-codes --input-dir imports_good --output-dir imports_good '
     '--splits train:1,eval:1', ['--output-dir']),
    ('import_splits_zero', 'import-codes --input-dir imports_good --output-dir imported '
     '--splits train:0,eval:1', ['train']),
    ('import_splits_without_eval', 'import-codes --input-dir imports_good --output-dir imported '
     '--splits train:1', ['eval']),
    # train: flags
    ('train_log_every_zero', f'{_TRAIN} --log-every 0', ['--log-every']),
    ('train_steps_zero', f'{_TRAIN} --steps 0', ['--steps']),
    ('train_steps_not_int', f'{_TRAIN} --steps many', ['--steps']),
    ('train_eval_every_negative', f'{_TRAIN} --eval-every=-1', ['--eval-every']),
    # train: data
    ('train_eval_examples_missing', f'{_TRAIN} --eval-examples nowhere/*.gz', ['nowhere']),
    ('train_eval_examples_garbage', f'{_TRAIN} --eval-examples garbage.bin', ['garbage.bin']),
    ('train_eval_examples_truncated', f'{_TRAIN} --eval-examples truncated.tfrecord',
     ['truncated.tfrecord']),
    ('train_eval_examples_dir', f'{_TRAIN} --eval-examples empty_dir', ['empty_dir']),
    ('train_eval_examples_too_deep', f'{_TRAIN} --eval-examples deep.tfrecord.gz',
     ['deep.tfrecord.gz', 'model_config.json', 'layer_count=2']),
    ('train_examples_missing', 'train --model-config model_config.json --train-config '
     'train_config.json --examples nowhere --train-dir run', ['nowhere']),
    ('train_examples_without_records', 'train --model-config model_config.json --train-config '
     'train_config.json --examples empty_dir --train-dir run', ['empty_dir']),
    ('train_input_config_wrong_type', 'train --model-config model_config.json --train-config '
     'train_config.json --input-config ic_wrong_type.json --train-dir run', ['ic_wrong_type.json']),
    ('train_input_config_missing_data', 'train --model-config model_config.json --train-config '
     'train_config.json --input-config ic_missing_file.json --train-dir run', ['nowhere.tfrecord']),
    ('train_input_config_garbage_data', 'train --model-config model_config.json --train-config '
     'train_config.json --input-config ic_garbage.json --train-dir run', ['garbage.bin']),
    ('train_dir_under_file', 'train --model-config model_config.json --train-config '
     'train_config.json --examples examples --train-dir a_file.txt/run', ['a_file.txt/run']),
    ('train_dir_is_file', 'train --model-config model_config.json --train-config '
     'train_config.json --examples examples --train-dir a_file.txt', ['a_file.txt']),
    # train: codes deeper than the model codes are refused before training (never truncated)
    ('train_codes_deeper_than_coded_layer_count', f'{_TRAIN_WITHOUT_CONFIG} --model-config '
     'mc_coded1.json', ['mc_coded1.json', 'Split-train', 'depth 4', 'coded_layer_count=1']),
    ('train_codes_deeper_than_layer_count', f'{_TRAIN_WITHOUT_CONFIG} --model-config '
     'mc_one_layer.json', ['mc_one_layer.json', 'Split-train', 'layer_count=1']),
    ('train_codes_not_whole_layers', f'{_TRAIN_WITHOUT_CONFIG} --model-config mc_depth3.json',
     ['mc_depth3.json', 'Split-train', 'layer_depth 3']),
    # train: configs
    ('train_model_config_wrong_type', f'{_TRAIN_WITHOUT_CONFIG} --model-config mc_wrong_type.json',
     ['mc_wrong_type.json', 'layer_depth']),
    ('train_model_config_float', f'{_TRAIN_WITHOUT_CONFIG} --model-config mc_float.json',
     ['mc_float.json', 'layer_depth']),
    ('train_model_config_negative', f'{_TRAIN_WITHOUT_CONFIG} --model-config mc_negative.json',
     ['mc_negative.json', 'layer_depth']),
    ('train_model_config_missing_key', f'{_TRAIN_WITHOUT_CONFIG} --model-config mc_missing.json',
     ['mc_missing.json', 'layer_depth']),
    ('train_model_config_unknown_key', f'{_TRAIN_WITHOUT_CONFIG} --model-config mc_unknown.json',
     ['mc_unknown.json', 'layers']),
    ('train_model_config_not_object', f'{_TRAIN_WITHOUT_CONFIG} --model-config mc_list.json',
     ['mc_list.json', 'JSON object']),
    ('train_model_config_not_json', f'{_TRAIN_WITHOUT_CONFIG} --model-config not_json.json',
     ['not_json.json', 'JSON']),
    ('train_model_config_is_dir', f'{_TRAIN_WITHOUT_CONFIG} --model-config empty_dir',
     ['empty_dir']),
    ('train_model_config_missing', f'{_TRAIN_WITHOUT_CONFIG} --model-config nowhere.json',
     ['nowhere.json']),
    ('train_train_config_wrong_type', 'train --model-config model_config.json --examples examples '
     '--train-dir run --train-config tc_wrong_type.json', ['tc_wrong_type.json', 'batch_size']),
    ('train_train_config_negative', 'train --model-config model_config.json --examples examples '
     '--train-dir run --train-config tc_negative.json', ['tc_negative.json', 'learning_rate']),
    ('train_train_config_missing_key', 'train --model-config model_config.json --examples examples '
     '--train-dir run --train-config tc_missing.json', ['tc_missing.json', 'samples_per_decay']),
    # code-length: models
    ('code_length_model_missing', 'code-length --model nowhere --input sample.npz', ['nowhere']),
    ('code_length_model_is_file', 'code-length --model a_file.txt --input sample.npz', ['a_file.txt']),
    ('code_length_model_empty_dir', 'code-length --model empty_dir --input sample.npz',
     ['empty_dir', 'model/']),
    ('code_length_model_unfinished_train', 'code-length --model unfinished_train --input sample.npz',
     ['unfinished_train', 'model/']),
    ('code_length_model_newer_version', 'code-length --model newer_model --input sample.npz',
     ['newer_model', 'version 2', 'newer']),
    ('code_length_model_pickled_weights', 'code-length --model pickled_weights_model --input '
     'sample.npz', ['pickled_weights_model']),
    # code-length: inputs
    ('code_length_input_missing', 'code-length --model model --input nowhere.npz', ['nowhere.npz']),
    ('code_length_input_is_dir', 'code-length --model model --input empty_dir', ['empty_dir']),
    ('code_length_glob_matches_nothing', 'code-length --model model --input nowhere*.tfrecord',
     ['nowhere*.tfrecord']),
    ('code_length_pickle', 'code-length --model model --input pickled.npz', ['pickled.npz', 'pickle']),
    ('code_length_wrong_keys', 'code-length --model model --input wrong_keys.npz',
     ['wrong_keys.npz', 'keys']),
    ('code_length_float_codes', 'code-length --model model --input float_codes.npz',
     ['float_codes.npz', 'float32']),
    ('code_length_float_shape', 'code-length --model model --input float_shape.npz',
     ['float_shape.npz', 'shape']),
    ('code_length_zero_shape_npz', 'code-length --model model --input zero_shape.npz',
     ['zero_shape.npz', 'positive']),
    ('code_length_10e9_bits_in_4_bytes', 'code-length --model model --input bomb.npz',
     ['bomb.npz', '1,000,000,000 bits']),
    ('code_length_10e9_bits_header_lies', 'code-length --model model --input bomb_header.npz',
     ['bomb_header.npz', '1,000,000,000 bits']),
    ('code_length_10e9_bits_of_zeros', 'code-length --model model --input bomb_zeros.npz',
     ['bomb_zeros.npz', '1,000,000,000 bits']),
    ('code_length_npy_not_npz', 'code-length --model model --input array.npz', ['array.npz', '.npy']),
    ('code_length_truncated_npz', 'code-length --model model --input truncated.npz',
     ['truncated.npz']),
    ('code_length_garbage', 'code-length --model model --input garbage.bin', ['garbage.bin']),
    ('code_length_empty_file', 'code-length --model model --input empty.tfrecord',
     ['empty.tfrecord', 'empty']),
    ('code_length_truncated_tfrecord', 'code-length --model model --input truncated.tfrecord',
     ['truncated.tfrecord', 'TFRecord']),
    ('code_length_truncated_gzip_tfrecord', 'code-length --model model --input '
     'truncated.tfrecord.gz', ['truncated.tfrecord.gz', 'GZIP']),
    ('code_length_records_not_examples', 'code-length --model model --input not_examples.tfrecord',
     ['not_examples.tfrecord record 0', 'tf.Example']),
    ('code_length_example_without_code', 'code-length --model model --input no_code.tfrecord',
     ['no_code.tfrecord record 0', '"code"']),
    ('code_length_example_zero_shape', 'code-length --model model --input zero_shape.tfrecord',
     ['zero_shape.tfrecord record 0', 'positive']),
    ('code_length_example_10e9_bits_in_1_byte', 'code-length --model model --input '
     'short_code.tfrecord', ['short_code.tfrecord record 0', 'bits']),
    ('code_length_codes_deeper_than_model', 'code-length --model model --input deep.npz',
     ['deep.npz', 'at most 8']),
    ('code_length_plot_under_file', 'code-length --model model --input sample.npz --plot '
     'a_file.txt/p.png', ['--plot', 'a_file.txt/p.png']),
    ('code_length_plot_is_dir', 'code-length --model model --input sample.npz --plot empty_dir',
     ['--plot', 'empty_dir']),
    # compress
    ('compress_output_under_file', 'compress --model model sample.npz -o a_file.txt/x.nec',
     ['-o', 'a_file.txt/x.nec']),
    ('compress_output_under_missing_dir', 'compress --model model sample.npz -o missing_dir/x.nec',
     ['-o', 'missing_dir/x.nec', 'does not exist']),
    ('compress_output_is_dir', 'compress --model model sample.npz -o empty_dir', ['empty_dir']),
    ('compress_output_exists', 'compress --model model sample.npz -o sample_noext',
     ['sample_noext', '--overwrite']),
    ('compress_output_missing', 'compress --model model sample.npz', ['-o']),
    ('compress_input_missing', 'compress --model model nowhere.npz -o x.nec', ['nowhere.npz']),
    ('compress_input_is_dir', 'compress --model model empty_dir -o x.nec', ['empty_dir']),
    ('compress_pickle', 'compress --model model pickled.npz -o x.nec', ['pickled.npz', 'pickle']),
    ('compress_10e9_bits_of_zeros', 'compress --model model bomb_zeros.npz -o x.nec',
     ['bomb_zeros.npz']),
    ('compress_garbage', 'compress --model model garbage.bin -o x.nec', ['garbage.bin']),
    ('compress_truncated_tfrecord', 'compress --model model truncated.tfrecord -o x.nec',
     ['truncated.tfrecord']),
    ('compress_empty_file', 'compress --model model empty.tfrecord -o x.nec', ['empty.tfrecord']),
    ('compress_codes_deeper_than_model', 'compress --model model deep.npz -o x.nec',
     ['deep.npz', 'at most 8']),
    ('compress_model_newer_version', 'compress --model newer_model sample.npz -o x.nec',
     ['newer_model', 'version 2']),
    ('compress_model_missing', 'compress --model nowhere sample.npz -o x.nec', ['nowhere']),
    ('compress_threads_zero', 'compress --model model sample.npz -o x.nec --threads 0',
     ['--threads']),
    # compress: several inputs (files, globs, directories), one output each into -o DIR
    ('compress_many_output_missing', 'compress --model model sample.npz plain.tfrecord -o '
     'missing_dir', ['-o missing_dir', 'does not exist', 'existing directory']),
    ('compress_many_output_not_dir', 'compress --model model sample.npz plain.tfrecord -o '
     'a_file.txt', ['-o a_file.txt', 'is not a directory']),
    ('compress_dir_output_missing', 'compress --model model sample.npz -o missing_dir/',
     ['-o missing_dir/', 'does not exist']),
    ('compress_many_same_output_name', 'compress --model model sample.npz dup/sample.npz -o '
     'empty_dir', ['dup/sample.npz', 'same output name as sample.npz', 'empty_dir/sample.npz.nec']),
    ('compress_many_same_input_twice', 'compress --model model sample.npz sample.npz -o empty_dir',
     ['sample.npz', 'empty_dir/sample.npz.nec']),
    ('compress_glob_matching_nothing', "compress --model model 'nowhere*.npz' -o empty_dir",
     ['nowhere*.npz', 'no files match']),
    ('compress_glob_matching_nothing_one_output', "compress --model model 'nowhere*.gz' -o x.nec",
     ['nowhere*.gz', 'no files match']),
    ('compress_many_bad_second_input', 'compress --model model sample.npz pickled.npz -o empty_dir',
     ['pickled.npz', 'pickle']),
    ('compress_many_input_missing', 'compress --model model sample.npz nowhere.npz -o empty_dir',
     ['nowhere.npz']),
    ('compress_many_output_exists', 'compress --model model sample.npz plain.tfrecord -o '
     'out_with_nec', ['out_with_nec/sample.npz.nec', 'exists; pass --overwrite']),
    ('compress_many_codes_deeper_than_model', 'compress --model model sample.npz deep.npz -o '
     'empty_dir', ['deep.npz', 'layer']),
    ('compress_dir_holding_other_files', 'compress --model model mixed_dir -o empty_dir',
     ['mixed_dir/notes.txt']),
    ('compress_dir_input_one_output_file', 'compress --model model mixed_dir -o x.nec',
     ['-o x.nec', 'does not exist']),
    # decompress
    ('decompress_output_under_file', 'decompress --model model one.nec -o a_file.txt/x.npz',
     ['-o', 'a_file.txt/x.npz']),
    ('decompress_output_is_dir', 'decompress --model model one.nec -o empty_dir', ['empty_dir']),
    ('decompress_output_exists', 'decompress --model model one.nec -o sample.npz',
     ['sample.npz', '--overwrite']),
    ('decompress_input_missing', 'decompress --model model nowhere.nec -o x.npz', ['nowhere.nec']),
    ('decompress_input_is_dir', 'decompress --model model empty_dir -o x.npz', ['empty_dir']),
    ('decompress_input_not_compressed', 'decompress --model model sample.npz -o x.npz',
     ['sample.npz', 'magic']),
    ('decompress_input_truncated', 'decompress --model model truncated.nec -o x.npz',
     ['truncated.nec', 'truncated']),
    ('decompress_two_codes_into_npz', 'decompress --model model two.nec -o x.npz',
     ['x.npz', 'one code']),
    ('decompress_wrong_model', 'decompress --model other_model one.nec -o x.npz',
     ['one.nec', 'different model']),
    ('decompress_model_newer_version', 'decompress --model newer_model one.nec -o x.npz',
     ['newer_model', 'version 2']),
    ('decompress_threads_negative', 'decompress --model model one.nec -o x.npz --threads=-2',
     ['--threads']),
    # decompress: several inputs, one output each into -o DIR
    ('decompress_many_output_missing', 'decompress --model model one.nec two.nec -o missing_dir',
     ['-o missing_dir', 'does not exist', 'existing directory']),
    ('decompress_many_output_not_dir', 'decompress --model model one.nec two.nec -o a_file.txt',
     ['-o a_file.txt', 'is not a directory']),
    ('decompress_many_same_output_name', 'decompress --model model one.nec dup/one.nec -o '
     'empty_dir', ['dup/one.nec', 'same output name as one.nec', 'empty_dir/one']),
    ('decompress_glob_matching_nothing', "decompress --model model 'nowhere*.nec' -o empty_dir",
     ['nowhere*.nec', 'no files match']),
    ('decompress_glob_one_output_file', "decompress --model model '*.nec' -o x.npz",
     ['-o x.npz', 'does not exist']),
    ('decompress_many_truncated_second', 'decompress --model model one.nec truncated.nec -o '
     'empty_dir', ['truncated.nec', 'truncated']),
    ('decompress_many_wrong_model', 'decompress --model other_model two.nec one.nec -o empty_dir',
     ['two.nec', 'different model']),
    ('decompress_many_name_without_nec', 'decompress --model model one.nec one_copy.bin -o '
     'empty_dir', ['one_copy.bin', 'does not end in .nec']),
    ('decompress_many_not_compressed', 'decompress --model model one.nec dup/sample.npz -o '
     'empty_dir', ['dup/sample.npz', 'does not end in .nec']),
    ('decompress_many_output_exists', 'decompress --model model one.nec two.nec -o '
     'out_with_restored', ['out_with_restored/one', 'exists; pass --overwrite']),
    ('decompress_dir_without_nec', 'decompress --model model imports_good -o empty_dir',
     ['imports_good', 'no .nec files']),
    # pipeline run / compile / submit
    ('pipeline_without_action', 'pipeline', ['ACTION']),
    ('pipeline_run_count_zero', 'pipeline run --pipeline-root root --count 0', ['count']),
    ('pipeline_run_count_not_int', 'pipeline run --pipeline-root root --count ten', ['--count']),
    ('pipeline_run_steps_negative', 'pipeline run --pipeline-root root --train-steps=-3',
     ['train_steps']),
    ('pipeline_run_config_missing', 'pipeline run --pipeline-root root --config nowhere.json',
     ['nowhere.json']),
    ('pipeline_run_config_not_json', 'pipeline run --pipeline-root root --config not_json.json',
     ['not_json.json']),
    ('pipeline_run_config_wrong_type', 'pipeline run --pipeline-root root --config '
     'settings_wrong_type.json', ['settings_wrong_type.json', 'count']),
    ('pipeline_run_config_negative', 'pipeline run --pipeline-root root --config '
     'settings_negative.json', ['settings_negative.json', 'train_steps']),
    ('pipeline_run_config_zero_shape', 'pipeline run --pipeline-root root --config '
     'settings_zero_shape.json', ['settings_zero_shape.json', 'code_shape']),
    ('pipeline_run_config_bad_model_config', 'pipeline run --pipeline-root root --config '
     'settings_bad_model.json', ['layer_depth']),
    ('pipeline_run_config_unknown_key', 'pipeline run --pipeline-root root --config '
     'settings_unknown.json', ['settings_unknown.json', 'steps']),
    ('pipeline_run_codes_dir_missing', 'pipeline run --pipeline-root root --codes-dir nowhere',
     ['nowhere']),
    ('pipeline_run_root_under_file', 'pipeline run --pipeline-root a_file.txt/root',
     ['--pipeline-root', 'a_file.txt/root']),
    ('pipeline_run_root_is_file', 'pipeline run --pipeline-root a_file.txt',
     ['--pipeline-root', 'a_file.txt']),
    ('pipeline_compile_output_under_file', 'pipeline compile --output a_file.txt/p.yaml',
     ['--output', 'a_file.txt/p.yaml']),
    ('pipeline_compile_output_not_yaml', 'pipeline compile --output p.json', ['p.json', '.yaml']),
    ('pipeline_compile_config_wrong_type', 'pipeline compile --output p.yaml --config '
     'settings_wrong_type.json', ['settings_wrong_type.json']),
    ('pipeline_compile_max_code_length_text', 'pipeline compile --output p.yaml '
     '--max-code-length low', ['--max-code-length']),
    ('pipeline_submit_package_missing', 'pipeline submit --host http://127.0.0.1:9 --package '
     'nowhere.yaml', ['nowhere.yaml']),
    ('pipeline_submit_package_not_yaml', 'pipeline submit --host http://127.0.0.1:9 --package '
     'a_file.txt', ['a_file.txt']),
    ('pipeline_submit_package_is_dir', 'pipeline submit --host http://127.0.0.1:9 --package '
     'pipeline.yaml', ['pipeline.yaml']),
    ('pipeline_submit_host_missing', 'pipeline submit --package pipeline.yaml', ['--host']),
    # metrics
    ('metrics_root_missing', 'metrics nowhere', ['nowhere']),
    ('metrics_root_is_file', 'metrics a_file.txt', ['a_file.txt']),
    ('metrics_no_store', 'metrics empty_dir', ['empty_dir', 'metadata.sqlite']),
    ('metrics_damaged_store', 'metrics damaged_root', ['damaged_root/metadata.sqlite']),
    ('metrics_empty_store', 'metrics empty_store_root', ['empty_store_root/metadata.sqlite']),
    ('metrics_plot_under_file', 'metrics empty_store_root --plot a_file.txt/p.png',
     ['--plot', 'a_file.txt/p.png']),
]


_COMMANDS = {'generate', 'sample', 'import-codes', 'train', 'code-length', 'compress', 'decompress',
             'pipeline', 'metrics'}


def _snapshot(root):
  """Every file and folder under root: files with size and mtime (folders' mtimes change when
  a probe file comes and goes, so only their names count)."""
  found = {}
  for directory, folders, files in os.walk(root):
    for name in folders:
      found[os.path.relpath(os.path.join(directory, name), root)] = 'folder'
    for name in files:
      status = os.lstat(os.path.join(directory, name))
      found[os.path.relpath(os.path.join(directory, name), root)] = (status.st_size,
                                                                      status.st_mtime_ns)
  return found


def test_the_table_covers_every_subcommand():
  commands = {argv.split()[0] + (' ' + argv.split()[1] if argv.startswith('pipeline ') else '')
              for _, argv, _ in CASES if argv}
  assert commands >= {'generate', 'sample', 'import-codes', 'train', 'code-length', 'compress',
                      'decompress', 'pipeline run', 'pipeline compile', 'pipeline submit',
                      'metrics'}
  assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize('argv, fragments', [(argv, fragments) for _, argv, fragments in CASES],
                         ids=[name for name, _, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(ws, argv, fragments, capsys, monkeypatch):
  monkeypatch.chdir(ws)
  before = _snapshot(ws)
  status = cli.main(shlex.split(argv))
  out, err = capsys.readouterr()
  assert 'Traceback' not in err, err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  line = lines[0]
  command = argv.split()[0] if argv else ''
  assert line.startswith('entropy-coder') and ': error: ' in line, line
  if command in _COMMANDS:
    assert line.startswith(f'entropy-coder {command}'), line
  for fragment in fragments:
    assert fragment in line, (fragment, line)
  assert status == 2, line
  assert out == ''
  after = _snapshot(ws)
  assert after == before, {'added': sorted(set(after) - set(before)),
                           'removed': sorted(set(before) - set(after)),
                           'changed': sorted(k for k in before if k in after and before[k] != after[k])}


# ---- The reported bugs, one test each (each failed before its fix) ------------------------------


def test_compress_and_decompress_check_the_output_before_any_work(ws, tmp_path, capsys,
                                                                   monkeypatch):
  """The issue: `-o missing_dir/x.nec` printed a traceback after all the coding work."""
  from entropy_coder.commands import compress as compress_command  # pylint: disable=g-import-not-at-top

  def no_work(*args, **kwargs):
    raise AssertionError('the engine ran before the output was checked')

  monkeypatch.setattr(compress_command, '_ready_engine', no_work)
  monkeypatch.setattr(codec, 'compress_with_stats', no_work)
  monkeypatch.setattr(codec, 'decompress_with_stats', no_work)
  for argv in (['compress', '--model', os.path.join(ws, 'model'), os.path.join(ws, 'sample.npz')],
               ['decompress', '--model', os.path.join(ws, 'model'), os.path.join(ws, 'one.nec')]):
    target = str(tmp_path / 'missing_dir' / 'x.out')
    assert cli.main(argv + ['-o', target]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err
    assert f'{target}: cannot be written' in err and 'does not exist' in err
  assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_no_half_written_file(ws, tmp_path, capsys, monkeypatch):
  """Outputs go to a temporary file renamed into place: a write that fails midway (here a full
  disk while the GZIP TFRecord is written) leaves neither the output nor the temporary file."""
  def half_then_full_disk(path, records):
    with open(path, 'wb') as f:
      f.write(b'\x1f\x8b half a file')
    raise OSError(28, 'No space left on device', path)

  monkeypatch.setattr(tfrecord_files, 'write_gzip_tfrecords', half_then_full_disk)
  target = tmp_path / 'restored.tfrecord.gz'
  status = cli.main(['decompress', '--model', os.path.join(ws, 'model'), os.path.join(ws, 'two.nec'),
                     '-o', str(target)])
  err = capsys.readouterr().err
  # The decoding before the write may show progress (carriage-return lines); the error is one.
  lines = [line for line in err.replace('\r', '\n').split('\n')
           if line and not re.match(r'^\w+: +[\d.]+% of ', line)]
  assert status == 2 and len(lines) == 1 and 'No space left on device' in lines[0], err
  assert os.listdir(tmp_path) == []


def test_a_many_file_run_that_fails_midway_says_what_it_wrote(ws, tmp_path, capsys, monkeypatch):
  """A file that fails only once the work has begun (a stream damaged past its header, a coding
  error) stops a many-file run with one line naming it and how many outputs came before it;
  those are complete, the failed one and the rest are not written."""
  model = os.path.join(ws, 'model')
  inputs, packed = tmp_path / 'in', tmp_path / 'packed'
  inputs.mkdir()
  packed.mkdir()
  for name in ('a', 'b', 'c'):
    shutil.copy(os.path.join(ws, 'sample.npz'), inputs / f'{name}.npz')
  assert cli.main(['compress', '--model', model, str(inputs), '-o', f'{packed}/']) == 0
  damaged = bytearray((packed / 'b.npz.nec').read_bytes())
  damaged[-3] ^= 0x21  # in the range coder's stream: the header and its CRC still read
  (packed / 'b.npz.nec').write_bytes(bytes(damaged))
  restored = tmp_path / 'restored'
  restored.mkdir()
  capsys.readouterr()
  assert cli.main(['decompress', '--model', model, str(packed), '-o', f'{restored}/']) == 2
  err = capsys.readouterr().err.strip().split('\n')[-1]
  assert 'b.npz.nec' in err and err.endswith(f'(1 of 3 files written into {restored}/ before it)')
  assert sorted(os.listdir(restored)) == ['a.npz']

  real = codec.compress_each

  def fails_second(items, files, **kwargs):
    results = real(items, files, **kwargs)
    yield next(results)
    raise UserError('the coder failed')

  monkeypatch.setattr(codec, 'compress_each', fails_second)
  again = tmp_path / 'again'
  again.mkdir()
  assert cli.main(['compress', '--model', model, str(inputs), '-o', f'{again}/']) == 2
  err = capsys.readouterr().err.strip().split('\n')[-1]
  assert err.endswith(f'{inputs / "b.npz"}: the coder failed '
                      f'(1 of 3 files written into {again}/ before it)'), err
  assert os.listdir(again) == ['a.npz.nec']


def test_an_interrupted_compress_leaves_nothing(ws, tmp_path, capsys, monkeypatch):
  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(codec, 'compress_with_stats', interrupted)
  status = cli.main(['compress', '--model', os.path.join(ws, 'model'),
                     os.path.join(ws, 'sample.npz'), '-o', str(tmp_path / 'x.nec')])
  assert status == 130 and 'interrupted' in capsys.readouterr().err
  assert os.listdir(tmp_path) == []


def test_an_output_place_no_file_can_be_created_in_is_refused_first(tmp_path, monkeypatch):
  """The writability probe (a temporary file made and removed) of a file's directory and of an
  output directory: a read-only mount is one line naming the flag and path, before any work."""
  def read_only(*args, **kwargs):
    raise OSError(30, 'Read-only file system')

  monkeypatch.setattr(output_files.tempfile, 'mkstemp', read_only)
  with pytest.raises(UserError) as caught:
    output_files.check_output_file(str(tmp_path / 'x.nec'), flag='-o')
  assert str(caught.value) == f'-o {tmp_path / "x.nec"}: cannot be written (Read-only file system)'
  with pytest.raises(UserError) as caught:
    output_files.check_output_dir(str(tmp_path), flag='-o')
  assert str(caught.value) == f'-o {tmp_path}: cannot be written (Read-only file system)'
  assert output_files.check_output_file(str(tmp_path / 'x.nec'), probe=False) == str(tmp_path / 'x.nec')
  assert os.listdir(tmp_path) == []


def test_atomic_output_replaces_only_when_complete(tmp_path):
  target = tmp_path / 'out.bin'
  target.write_bytes(b'old')
  with pytest.raises(RuntimeError):
    with output_files.atomic_output(str(target), overwrite=True) as temp:
      with open(temp, 'wb') as f:
        f.write(b'new but incomplete')
      raise RuntimeError('crash')
  assert target.read_bytes() == b'old' and os.listdir(tmp_path) == ['out.bin']
  with output_files.atomic_output(str(target), overwrite=True) as temp:
    with open(temp, 'wb') as f:
      f.write(b'new')
  assert target.read_bytes() == b'new' and os.listdir(tmp_path) == ['out.bin']
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask  # as open() would have made it
  with pytest.raises(UserError, match='exists; pass --overwrite'):
    with output_files.atomic_output(str(target)):
      pass


def test_model_accepts_the_train_directory(ws, tmp_path, capsys):
  """The issue: `--model runs/train` (not runs/train/model) was refused although train ran."""
  train_dir = tmp_path / 'train'
  shutil.copytree(os.path.join(ws, 'model'), train_dir / 'model')
  (train_dir / 'checkpoints').mkdir()
  assert model_files.resolve_model_dir(str(train_dir)) == str(train_dir / 'model')
  assert cli.main(['code-length', '--model', str(train_dir), '--input',
                   os.path.join(ws, 'sample.npz'), '--json']) == 0
  assert json.loads(capsys.readouterr().out)['model'] == str(train_dir / 'model')


def test_codes_deeper_than_coded_layer_count_are_refused_alike_by_training_and_codec(tmp_path):
  """The issue: the Trainer truncated codes deeper than coded_layer_count, the codec refused
  them, so RealCompressionCheck failed the run after training. Now one check answers both."""
  weights = dict(np.load(os.path.join(REFERENCE_DIR, 'weights_step25284.npz'), allow_pickle=False))
  model_files.write_model_files(str(tmp_path), weights,
                                {'layer_depth': 2, 'layer_count': 8, 'coded_layer_count': 2})
  files = model_files.read_model_files(str(tmp_path))
  config = ModelConfig(layer_depth=2, layer_count=8, coded_layer_count=2)
  with pytest.raises(UserError) as by_codec:
    build_network(files).layers_of(6, 'codes.tfrecord')
  with pytest.raises(UserError) as by_training:
    config.coded_depth(6, 'codes.tfrecord', f'the model at {files.path}')
  assert str(by_codec.value) == str(by_training.value)
  assert 'codes.tfrecord: code depth 6 is 3 layers' in str(by_training.value)
  assert 'at most 2 (coded_layer_count=2)' in str(by_training.value)
  assert config.coded_depth(4) == 4 == 2 * build_network(files).layers_of(4, 'x')


def test_a_sample_without_npz_extension_is_read_as_npz(tmp_path, ws, capsys):
  """The issue: `sample` writes any name, `compress` chose the format by the extension."""
  code, restored = str(tmp_path / 'code'), str(tmp_path / 'restored')
  assert cli.main(['sample', '--output', code, '--shape', '4,5,4']) == 0
  assert os.listdir(tmp_path) == ['code']  # exactly the name given
  assert codes_format.sniff_format(code) == codes_format.FORMAT_NPZ
  model = os.path.join(ws, 'model')
  assert cli.main(['compress', '--model', model, code, '-o', code + '.nec']) == 0
  with open(code + '.nec', 'rb') as f:
    assert codec.read_header(f.read()).source_format == bitstream.SOURCE_NPZ
  assert cli.main(['decompress', '--model', model, code + '.nec', '-o', restored]) == 0
  assert 'restored (npz)' in capsys.readouterr().out
  np.testing.assert_array_equal(codes_format.read_npz(restored)[0], codes_format.read_npz(code)[0])
  assert sorted(os.listdir(tmp_path)) == ['code', 'code.nec', 'restored']


def test_inputs_are_told_apart_by_content(ws):
  join = lambda name: os.path.join(ws, name)  # pylint: disable=unnecessary-lambda-assignment
  assert codes_format.sniff_format(join('sample_noext')) == codes_format.FORMAT_NPZ
  assert codes_format.sniff_format(join('codes.tfrecord.gz')) == codes_format.FORMAT_TFRECORD_GZIP
  assert codes_format.sniff_format(join('plain.tfrecord')) == codes_format.FORMAT_TFRECORD
  codes, fmt, layer_depth = codes_format.read_codes(join('codes.tfrecord.gz'))
  assert fmt == codes_format.FORMAT_TFRECORD_GZIP and layer_depth == 0 and len(codes) == 2
  codes, fmt, layer_depth = codes_format.read_codes(join('sample_noext'))
  assert fmt == codes_format.FORMAT_NPZ and layer_depth == 2
  np.testing.assert_array_equal(codes[0][1], CODE)



def test_a_pattern_must_match_tfrecords_only(ws, tmp_path):
  shutil.copy(os.path.join(ws, 'plain.tfrecord'), tmp_path / 'c1')
  shutil.copy(os.path.join(ws, 'sample.npz'), tmp_path / 'c2')
  with pytest.raises(UserError, match=r'c2: is a .npz, matched by the pattern .*c\*'):
    codes_format.read_codes(str(tmp_path / 'c*'))
  os.remove(tmp_path / 'c2')
  assert len(codes_format.read_codes(str(tmp_path / 'c*'))[0]) == 1


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.bool_, np.int16, np.uint64])
def test_codes_of_any_numeric_dtype_holding_exact_0_and_1_are_coded(ws, dtype):
  """The issue: float arrays of exact 0.0 / 1.0 were refused with "only 0 and 1"."""
  files = model_files.read_model_files(os.path.join(ws, 'model'))
  restored = codec.decompress(codec.compress([CODE.astype(dtype)], files), files)
  np.testing.assert_array_equal(restored[0], CODE)
  assert restored[0].dtype == np.uint8


@pytest.mark.parametrize('bad, named', [(np.full((2, 2, 2), 0.5, np.float32), 'float32'),
                                        (np.full((2, 2, 2), np.nan), 'float64'),
                                        (np.full((2, 2, 2), -1, np.int8), 'int8'),
                                        (np.full((2, 2, 2), 'a'), '<U1')])
def test_other_values_are_refused_naming_the_dtype(ws, bad, named):
  files = model_files.read_model_files(os.path.join(ws, 'model'))
  with pytest.raises(UserError, match='only 0 and 1') as error:
    codec.compress([bad], files)
  assert f'dtype {named}' in str(error.value)


def test_a_tiny_npz_declaring_10e9_bits_is_refused_without_reading_it(ws):
  import time  # pylint: disable=g-import-not-at-top
  import tracemalloc  # pylint: disable=g-import-not-at-top
  for name in ('bomb.npz', 'bomb_header.npz', 'bomb_zeros.npz'):
    path = os.path.join(ws, name)
    assert os.path.getsize(path) < 200_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
      with pytest.raises(UserError, match='1,000,000,000 bits'):
        codes_format.read_npz(path)
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 4 << 20, (name, peak)


def test_the_plot_is_written_at_exactly_the_given_name(ws, tmp_path):
  """matplotlib appended ".png" to a --plot name without it; now the name is the name."""
  plot = str(tmp_path / 'layers')
  assert cli.main(['code-length', '--model', os.path.join(ws, 'model'), '--input',
                   os.path.join(ws, 'sample.npz'), '--plot', plot]) == 0
  assert os.listdir(tmp_path) == ['layers']
  with open(plot, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
