"""The image encoder: the whole chain picture -> codes -> .nec -> codes -> picture, determinism,
resumed training, and one-line errors for bad pictures, codes and encoder directories.

A tiny encoder (2 bits x 4 iterations, narrow networks) is trained here in seconds; the
entropy coder is the reference model (layer_depth 2, 8 layers), which takes its depth-8 codes.
"""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from entropy_coder import cli
from entropy_coder import codec
from entropy_coder import codes_format
from entropy_coder.data_gen import sample_images
from entropy_coder.errors import UserError
from entropy_coder.image_encoder import api
from entropy_coder.image_encoder import config as config_lib
from entropy_coder.image_encoder import files
from entropy_coder.image_encoder import training

from helpers import reference_model

TINY = config_lib.EncoderConfig(bits_per_iteration=2, iterations=4, channels=(4, 8, 8, 8),
                                crop_size=32, batch_size=4, steps=12, seed=3)


def tiny_pictures():
  """Two small pictures to train on, one to evaluate."""
  photo = sample_images.packaged_photos(('topobathy',))[0]
  gray = sample_images.gray(photo.pixels)
  return [('top', gray[:48, :64]), ('bottom', gray[40:, 50:])], [('eval', gray[10:58, 20:100])]


def train_tiny(encoder_dir, config=TINY):
  pictures, eval_pictures = tiny_pictures()
  return training.train(str(encoder_dir), config, pictures, eval_pictures, save_every=5,
                        progress=False)


@pytest.fixture(scope='module')
def encoder_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp('encoder')
  train_tiny(directory)
  return str(directory)


def _picture(height=45, width=70):
  """An RGB picture whose sides are not multiples of 16 (padding is exercised)."""
  photo = sample_images.packaged_photos(('china',))[0]
  return photo.pixels[100:100 + height, 200:200 + width]


def _cli(argv, capsys):
  status = cli.main(argv)
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def test_trained_encoder_directory_and_evaluation(encoder_dir):
  document = config_lib.read_encoder_json(encoder_dir)
  assert document['trained_steps'] == TINY.steps
  assert document['config'] == TINY
  evaluation = document['evaluation']
  assert evaluation['pictures'] == ['eval']
  assert evaluation['bits_per_pixel'] == [2 * k / 256 for k in range(1, 5)]
  assert len(evaluation['psnr_db']) == 4 and all(np.isfinite(evaluation['psnr_db']))


def test_round_trip_picture_codes_nec_codes_picture(encoder_dir, tmp_path, capsys):
  picture = _picture()
  Image.fromarray(picture).save(tmp_path / 'china.png')
  (tmp_path / 'codes').mkdir()
  (tmp_path / 'pictures').mkdir()
  status, _, err = _cli(['encode-images', '--encoder', encoder_dir, str(tmp_path / 'china.png'),
                         '-o', str(tmp_path / 'codes')], capsys)
  assert status == 0, err
  npz = str(tmp_path / 'codes' / 'china.npz')
  code, layer_depth = codes_format.read_npz(npz)
  assert (code.shape, layer_depth) == ((3, 5, 8), 2)  # ceil(45/16) x ceil(70/16), 4 x 2 bits
  with np.load(npz, allow_pickle=False) as data:
    assert data['shape'].tolist() == [4, 1, 3, 5, 2]
  assert json.loads((tmp_path / 'codes' / 'china.size.json').read_text()) == {
      'height': 45, 'width': 70}

  # The entropy coder: bit-identical codes back.
  model = reference_model(str(tmp_path / 'model'))
  packed = codec.compress([code], model)
  (decoded,) = codec.decompress(packed, model)
  assert decoded.dtype == np.uint8 and np.array_equal(decoded, code)
  os.remove(npz)
  with open(npz, 'wb') as f:
    codes_format.write_npz(f, decoded, layer_depth)

  status, _, err = _cli(['decode-images', '--encoder', encoder_dir, npz,
                         '-o', str(tmp_path / 'pictures')], capsys)
  assert status == 0, err
  with Image.open(tmp_path / 'pictures' / 'china.png') as image:
    assert image.mode == 'L'
    written = np.asarray(image)
  # The picture is exactly the encoder's own reconstruction after all iterations.
  encoded = api.encode(sample_images.gray(picture), encoder_dir)
  assert written.shape == (45, 70)
  assert np.array_equal(written, encoded.reconstructions[-1])
  assert np.array_equal(encoded.code, code)

  # Fewer iterations decode with the first ones: the encoder's reconstruction after them.
  status, _, err = _cli(['decode-images', '--encoder', encoder_dir, npz, '--iterations', '2',
                         '--overwrite', '-o', str(tmp_path / 'pictures')], capsys)
  assert status == 0, err
  with Image.open(tmp_path / 'pictures' / 'china.png') as image:
    assert np.array_equal(np.asarray(image), encoded.reconstructions[1])


def test_encoding_is_deterministic(encoder_dir):
  gray = sample_images.gray(_picture(64, 80))
  first = api.encode_image(gray, encoder_dir)
  again = api.encode_image(gray.copy(), encoder_dir)
  api._LOADED.clear()  # a freshly loaded encoder gives the same bits  pylint: disable=protected-access
  fresh = api.encode_image(gray, encoder_dir)
  assert first.shape == (4, 5, 8) and first.dtype == np.uint8
  assert np.array_equal(first, again) and np.array_equal(first, fresh)
  # RGB in is its BT.601 gray; a different picture gives a different code.
  assert np.array_equal(api.encode_image(_picture(64, 80), encoder_dir), first)
  assert not np.array_equal(api.encode_image(255 - gray, encoder_dir), first)


def test_padding_repeats_the_edges():
  gray = np.arange(17 * 3, dtype=np.uint8).reshape(17, 3)
  padded = files.padded(gray)
  assert padded.shape == (32, 16)
  assert np.array_equal(padded[:17, :3], gray)
  assert np.array_equal(padded[20, :3], gray[16]) and np.array_equal(padded[5, 10], gray[5, 2])


def test_resumed_training_equals_one_run(tmp_path, encoder_dir):
  half = config_lib.config_from_dict(dict(TINY.to_dict(), steps=7))
  train_tiny(tmp_path / 'resumed', half)
  document = train_tiny(tmp_path / "resumed")  # resumes from its step-7 checkpoint
  assert document['trained_steps'] == TINY.steps
  gray = sample_images.gray(_picture(48, 48))
  assert np.array_equal(api.encode_image(gray, str(tmp_path / 'resumed')),
                        api.encode_image(gray, encoder_dir))


def _one_line_error(argv, capsys, *fragments):
  status, out, err = _cli(argv, capsys)
  assert status == 2, (out, err)
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


def test_bad_inputs_are_one_line_errors(encoder_dir, tmp_path, capsys):
  out = str(tmp_path / 'out')
  os.mkdir(out)
  good = str(tmp_path / 'good.png')
  Image.fromarray(_picture()).save(good)
  not_image = tmp_path / 'notes.png'
  not_image.write_text('not a picture')
  float_image = str(tmp_path / 'float.tiff')
  Image.fromarray(np.zeros((20, 20), np.float32), mode='F').save(float_image)

  encode = ['encode-images', '--encoder', encoder_dir, '-o', out]
  _one_line_error(encode + [str(not_image)], capsys, str(not_image), 'not an image file')
  _one_line_error(encode + [float_image], capsys, float_image, "unsupported image mode 'F'")
  _one_line_error(encode + [str(tmp_path / 'missing.png')], capsys, 'missing.png', 'no such file')
  _one_line_error(['encode-images', '--encoder', str(tmp_path), good, '-o', out], capsys,
                  str(tmp_path), 'not an image encoder directory')
  _one_line_error(['encode-images', '--encoder', str(tmp_path / 'nowhere'), good, '-o', out],
                  capsys, 'nowhere', 'no such directory')
  no_weights = tmp_path / 'no_weights'
  no_weights.mkdir()
  (no_weights / config_lib.ENCODER_JSON).write_text(
      open(config_lib.encoder_json_path(encoder_dir), encoding='utf-8').read())
  _one_line_error(['encode-images', '--encoder', str(no_weights), good, '-o', out], capsys,
                  str(no_weights), 'no trained weights')
  # A checkpoint of other networks than encoder.json says.
  wrong = tmp_path / 'wrong'
  os.mkdir(wrong)
  os.symlink(config_lib.checkpoint_dir(encoder_dir), config_lib.checkpoint_dir(str(wrong)))
  config_lib.write_encoder_json(str(wrong), config_lib.config_from_dict(
      dict(TINY.to_dict(), channels=[4, 8, 8, 16])), TINY.steps)
  _one_line_error(['encode-images', '--encoder', str(wrong), good, '-o', out], capsys,
                  str(wrong), 'does not fit')
  assert os.listdir(out) == []  # nothing written by any refused run

  # Codes that do not fit the encoder, and a damaged size file.
  codes = tmp_path / 'codes'
  codes.mkdir()
  deep = str(codes / 'deep.npz')
  with open(deep, 'wb') as f:
    codes_format.write_npz(f, np.zeros((2, 2, 10), np.uint8), 2)  # 5 iterations of 2 bits
  decode = ['decode-images', '--encoder', encoder_dir, '-o', out]
  _one_line_error(decode + [deep], capsys, deep, 'does not fit the encoder')
  other_bits = str(codes / 'bits.npz')
  with open(other_bits, 'wb') as f:
    codes_format.write_npz(f, np.zeros((2, 2, 8), np.uint8), 4)
  _one_line_error(decode + [other_bits], capsys, other_bits, 'has 4 bits per iteration')
  fine = str(codes / 'fine.npz')
  with open(fine, 'wb') as f:
    codes_format.write_npz(f, np.zeros((2, 2, 8), np.uint8), 2)
  (codes / 'fine.size.json').write_text('{"height": 5, "width": 32}')
  _one_line_error(decode + [fine], capsys, 'fine.size.json', 'pad to the code')
  _one_line_error(decode + [good], capsys, good, 'not a .npz')
  assert os.listdir(out) == []


def test_api_rejects_bad_arrays(encoder_dir):
  with pytest.raises(UserError, match='must be uint8'):
    api.encode_image(np.zeros((16, 16), np.float32), encoder_dir)
  with pytest.raises(UserError, match=r'\[H, W\] or \[H, W, 3\]'):
    api.encode_image(np.zeros((16, 16, 4), np.uint8), encoder_dir)


def test_pipeline_settings_for_pictures(encoder_dir, tmp_path):
  from entropy_coder.commands import pipeline_command  # pylint: disable=import-outside-toplevel
  from entropy_coder.pipeline import configs  # pylint: disable=import-outside-toplevel
  from entropy_coder.pipeline import pipeline  # pylint: disable=import-outside-toplevel
  pictures = tmp_path / 'pictures'
  pictures.mkdir()
  settings = configs.RunSettings(images_dir=str(pictures), encoder_dir=encoder_dir).checked()
  ready = pipeline_command.with_image_encoder(settings)
  assert ready.model_config == dict(configs.DEMO_MODEL_CONFIG, layer_depth=2, layer_count=4)
  arguments = ready.pipeline_arguments()
  assert arguments['images_dir'] == str(pictures) and arguments['encoder_dir'] == encoder_dir
  dag = pipeline.create_pipeline(pipeline_name='p', pipeline_root=str(tmp_path / 'root'),
                                 serving_model_dir=str(tmp_path / 'serving'), **arguments)
  (source,) = [c for c in dag.components if c.id == 'ImageCodeImport']
  assert source.exec_properties['input_base'] == str(pictures)

  with pytest.raises(UserError, match='codes_dir or images_dir, not both'):
    configs.RunSettings(images_dir=str(pictures), codes_dir=str(pictures)).checked()
  with pytest.raises(UserError, match='pictures directory does not exist'):
    configs.RunSettings(images_dir=str(tmp_path / 'nowhere')).checked()
  with pytest.raises(UserError, match='only used with images_dir'):
    configs.RunSettings(encoder_dir=encoder_dir).checked()
  with pytest.raises(UserError, match='give --encoder'):
    pipeline_command.with_image_encoder(configs.RunSettings(images_dir=str(pictures)).checked())


def test_a_trained_default_encoder_is_reused_not_retrained(encoder_dir, tmp_path):
  from entropy_coder.image_encoder import default_encoder  # pylint: disable=import-outside-toplevel
  copy = str(tmp_path / 'encoder')
  shutil.copytree(encoder_dir, copy)
  before = {name: os.path.getmtime(os.path.join(root, name))
            for root, _, names in os.walk(copy) for name in names}
  assert default_encoder.ensure_trained(copy, TINY) == copy
  after = {name: os.path.getmtime(os.path.join(root, name))
           for root, _, names in os.walk(copy) for name in names}
  assert after == before  # nothing trained or rewritten
  assert default_encoder.default_encoder_dir('runs/x') == os.path.join('runs/x', 'image_encoder')
