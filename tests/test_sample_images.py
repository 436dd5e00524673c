"""The packaged pictures and user image files as arrays (data_gen/sample_images.py)."""
import numpy as np
import pytest
from PIL import Image

from entropy_coder.data_gen import sample_images
from entropy_coder.errors import UserError


def test_every_packaged_picture_loads_as_rgb_of_its_documented_size():
  photos = sample_images.packaged_photos()
  sizes = {photo.name: photo.pixels.shape for photo in photos}
  assert sizes == {'grace_hopper': (600, 512, 3), 'china': (427, 640, 3), 'flower': (427, 640, 3),
                   'mri_s1045': (256, 256, 3), 'jacksboro_dem': (344, 403, 3),
                   'topobathy': (91, 120, 3)}
  for photo in photos:
    assert photo.pixels.dtype == np.uint8 and photo.source == photo.name
    assert photo.pixels.std() > 10, f'{photo.name} looks flat: wrongly decoded?'
  mri = next(photo.pixels for photo in photos if photo.name == 'mri_s1045')
  assert mri.max() == 215  # the 16-bit big-endian scan read the right way round


def test_crops_are_deterministic_in_range_and_keep_their_source():
  photos = sample_images.packaged_photos(['mri_s1045', 'topobathy'])
  first = sample_images.crops(photos, 9, seed=3, min_size=20, max_size=200, multiple=4)
  again = sample_images.crops(photos, 9, seed=3, min_size=20, max_size=200, multiple=4)
  other = sample_images.crops(photos, 9, seed=4, min_size=20, max_size=200, multiple=4)
  assert [c.name for c in first] == [c.name for c in again]
  assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(first, again))
  assert [c.name for c in first] != [c.name for c in other]
  for crop in first:
    height, width = crop.pixels.shape[:2]
    limit = {'mri_s1045': 256, 'topobathy': 91}
    assert height % 4 == 0 and width % 4 == 0 and 20 <= height <= min(200, limit[crop.source])
    assert crop.source in ('mri_s1045', 'topobathy') and crop.name.startswith(crop.source)
  assert len({c.pixels.shape for c in first}) > 3  # mixed shapes


def test_gray_is_bt601_luma():
  pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
  assert sample_images.gray(pixels).tolist() == [[76, 150, 29, 18]]


@pytest.mark.parametrize('mode', ['L', 'P', 'RGBA', 'I;16'])
def test_read_image_converts_common_modes_to_rgb(tmp_path, mode):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
  image = Image.fromarray(rgb)
  image = image.convert('L').convert('I;16') if mode == 'I;16' else image.convert(mode)
  path = tmp_path / 'x.png'
  image.save(path)
  pixels = sample_images.read_image(str(path))
  assert pixels.shape == (5, 7, 3) and pixels.dtype == np.uint8
  if mode == 'RGBA':
    assert np.array_equal(pixels, rgb)


def test_bad_image_files_give_one_line_errors(tmp_path):
  text = tmp_path / 'notes.png'
  text.write_text('not an image')
  cut = tmp_path / 'cut.png'
  Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 7).save(cut)
  cut.write_bytes(cut.read_bytes()[:60])
  for path, words in ((text, 'not an image'), (tmp_path / 'missing.png', 'no such file'),
                      (tmp_path, 'directory'), (cut, 'damaged')):
    with pytest.raises(UserError) as error:
      sample_images.read_image(str(path))
    assert words in str(error.value) and str(path) in str(error.value)
    assert '\n' not in str(error.value)
