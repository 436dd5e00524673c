"""ImageCodeImport in a real TFX pipeline (LocalDagRunner, sqlite ML-Metadata, Beam): pictures of
mixed sizes in, an Examples artifact of exactly the codes `image_encoder.api` gives them out;
a second run is CACHED; a bad picture fails the component before anything is written.
"""
import os
import shutil

import pytest
from PIL import Image

from entropy_coder.components import image_code_import
from entropy_coder.data_gen import sample_images
from entropy_coder.errors import UserError
from entropy_coder.image_encoder import api

from test_components import _executions, _output_examples, _run, _states, _store, assert_imported
from test_image_encoder import train_tiny
from test_import_codes import expected_splits

SPLITS = (('train', 2), ('eval', 1))


def _write_pictures(directory):
  """Five pictures of different sizes (one not a multiple of 16) and a non-picture file."""
  os.makedirs(directory)
  photo = sample_images.packaged_photos(('flower',))[0].pixels
  sizes = [(32, 48), (45, 70), (16, 16), (64, 32), (33, 17)]
  grays = {}
  for i, (height, width) in enumerate(sizes):
    pixels = photo[10 * i:10 * i + height, 20 * i:20 * i + width]
    name = f'pic_{i}.png'
    Image.fromarray(pixels).save(os.path.join(directory, name))
    grays[name] = sample_images.gray(pixels)
  with open(os.path.join(directory, 'README.txt'), 'w', encoding='utf-8') as f:
    f.write('not a picture: ignored\n')
  return grays


@pytest.fixture(scope='module')
def encoder_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('encoder'))
  train_tiny(directory)
  return directory


@pytest.mark.e2e
def test_pictures_become_an_examples_artifact_with_cache(tmp_path, encoder_dir):
  pictures = tmp_path / 'pictures'
  grays = _write_pictures(str(pictures))

  def components():
    return [image_code_import.ImageCodeImport(input_dir=str(pictures), encoder_dir=encoder_dir,
                                              splits=SPLITS)]

  _run(tmp_path, components())
  _run(tmp_path, components())
  with _store(tmp_path) as m:
    runs = _executions(m, 'ImageCodeImport')
    assert _states(runs) == ['COMPLETE', 'CACHED']
    codes = {name: api.encode_image(gray, encoder_dir) for name, gray in grays.items()}
    assert sorted({code.shape for code in codes.values()}) == [
        (1, 1, 8), (2, 3, 8), (3, 2, 8), (3, 5, 8), (4, 2, 8)]  # mixed shapes
    assert_imported(_output_examples(m, runs[0]), expected_splits(codes, SPLITS),
                    layer_depth=2, code_depth=8, num_files=5)


@pytest.mark.e2e
def test_bad_picture_fails_before_anything_is_written(tmp_path, encoder_dir):
  pictures = tmp_path / 'pictures'
  _write_pictures(str(pictures))
  (pictures / 'pic_9.png').write_bytes(b'\x89PNG broken')
  with pytest.raises(Exception) as caught:
    _run(tmp_path, [image_code_import.ImageCodeImport(
        input_dir=str(pictures), encoder_dir=encoder_dir, splits=SPLITS)])
  error = caught.value
  while error is not None and not isinstance(error, UserError):
    error = error.__cause__ or error.__context__
  assert error is not None and 'pic_9.png' in str(error), caught.value
  written = [f for _, _, names in os.walk(tmp_path / 'root') for f in names
             if f.endswith('.gz')]
  assert written == []


def test_wrong_encoder_directory_is_refused_when_the_component_is_made(tmp_path):
  with pytest.raises(UserError, match='not an image encoder directory'):
    image_code_import.ImageCodeImport(input_dir=str(tmp_path), encoder_dir=str(tmp_path))


def test_the_fingerprint_follows_the_weights(tmp_path, encoder_dir):
  copy = tmp_path / 'copy'
  shutil.copytree(encoder_dir, copy)
  assert image_code_import.encoder_fingerprint(str(copy)) == \
      image_code_import.encoder_fingerprint(encoder_dir)
  data = sorted((copy / 'checkpoints').glob('*.data-*'))[-1]
  raw = bytearray(data.read_bytes())
  raw[-1] ^= 1
  data.write_bytes(bytes(raw))
  assert image_code_import.encoder_fingerprint(str(copy)) != \
      image_code_import.encoder_fingerprint(encoder_dir)
