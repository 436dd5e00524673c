"""Datasets whose codes have different H x W (issue 12 §1): tiling, training, evaluation, export.

Contracts tested on real components (tf.data, the Trainer, the real SavedModel, the CLI):
* every epoch's tiling covers every bit of every code, and its seams move between epochs;
* a code's code length never depends on what it is batched with: the Trainer's pooled eval,
  `code-length` and the SavedModel's `serving_default` on a mixed batch of more than 16 codes
  all equal each code's figure computed alone (to 1e-6);
* a mixed-shape dataset imports, trains (`train`), measures (`code-length`) and round-trips
  (`compress` / `decompress`) from the command line.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from helpers import write_tfrecord
from entropy_coder import cli, codes_format
from entropy_coder.data_gen.synthetic import generate_codes
from entropy_coder.errors import UserError
from entropy_coder.trainer import code_length_ops
from entropy_coder.trainer import data, input_code_length, train_loop
from entropy_coder.trainer.config import ModelConfig, TrainConfig

MODEL = ModelConfig(layer_depth=2, layer_count=2)
TRAIN = TrainConfig(batch_size=4, learning_rate=0.02, decay_rate=0.9, samples_per_decay=10000,
                    crop=8)
# 20 codes (more than 16, so batched SIMD lanes differ from a code alone), 11 shapes, edge
# cases included: 1x1, one row, one column, smaller and larger than the crop.
SHAPES = [(1, 1), (1, 13), (9, 1), (3, 5), (8, 8), (8, 8), (8, 8), (12, 7), (5, 20), (16, 16),
          (16, 16), (17, 9), (11, 11), (11, 11), (20, 6), (8, 8), (13, 21), (2, 30), (16, 16),
          (9, 9)]


def _mixed_codes(depth=4, seed=5):
  return [generate_codes(seed, [i], shape=(h, w, depth))[0] for i, (h, w) in enumerate(SHAPES)]


def _tile_side(side, tile):
  """trainer/data.py's rule, written out: tile, or the largest tile // 2**k that fits."""
  while tile > side:
    tile //= 2
  return tile


def _alone_layer_bits(model, code):
  """[L] summed -log2 p of one code, run alone (batch of one)."""
  bits = tf.constant(code[None].astype(np.float32))
  probs = model(2.0 * bits - 1.0)
  return code_length_ops.per_layer_code_length_bits(
      bits[..., :probs.shape[-1]], probs, model.config.layer_depth).numpy()[0].astype(np.float64)


@pytest.mark.parametrize('shape', [(1, 1), (1, 40), (37, 1), (5, 40), (37, 9), (16, 16),
                                   (33, 33), (64, 48)])
def test_every_epoch_tiles_every_bit_and_the_seams_move(shape):
  tile = 16
  height, width = shape
  index = tf.reshape(tf.range(height * width, dtype=tf.float32), [height, width, 1])
  firsts = set()
  for epoch in range(6):
    tiles = data.code_tiles(index, tile, seed=3, epoch=tf.constant(epoch, tf.int64)).numpy()
    assert tiles.shape[1:] == (_tile_side(height, tile), _tile_side(width, tile), 1)
    seen = np.zeros(height * width, bool)
    seen[tiles.astype(np.int64).ravel()] = True
    assert seen.all(), f'epoch {epoch} leaves {np.count_nonzero(~seen)} bits untrained'
    # Tiles overlap only where an edge tile is shifted inside the code.
    th, tw = tiles.shape[1:3]
    assert tiles.size <= (np.ceil(height / th) + 1) * (np.ceil(width / tw) + 1) * th * tw
    firsts.add(tuple(tiles[:, 0, 0, 0].astype(int)))
  if height > tile or width > tile:
    assert len(firsts) > 1, 'the seams never move: the same bits always sit at a tile edge'


def test_training_batches_hold_one_tile_shape_and_every_code(tmp_path):
  codes = _mixed_codes()
  path = write_tfrecord(str(tmp_path / 'mixed.gz'), codes)
  shapes, files, packed, compression = data.code_shapes(path)
  assert shapes == [code.shape for code in codes]
  assert data.tile_size(shapes, 0) == data.DEFAULT_MIXED_CROP
  assert data.tile_size(shapes[4:5], 0) is None  # one shape, no crop: whole codes as before
  dataset = data.training_tiles(files, packed, compression, 4, batch_size=3, tile=8, seed=1)
  seen = set()
  total = 0
  for batch in dataset.take(600):
    area = batch.shape[1] * batch.shape[2]  # batches of smaller tiles hold more of them
    assert batch.shape[0] == 3 * min(max(64 // area, 1), data.MAX_BATCH_MULTIPLE)
    assert batch.shape[1] <= 8 and batch.shape[2] <= 8
    seen.add(tuple(batch.shape[1:3]))
    total += int(np.prod(batch.shape))
  expected = {(_tile_side(h, 8), _tile_side(w, 8)) for h, w in SHAPES}
  # Every tile shape of the dataset reaches training within a few epochs (most bits are in the
  # full-size buckets; the small ones fill more slowly: about 300 batches here).
  assert seen == expected, (seen, expected)
  assert total == sum(int(np.prod(b.shape)) for b in dataset.take(600))  # seeded, repeatable


def test_tiled_training_data_survives_a_global_tf_seed(tmp_path):
  """A Keras program in the same process may call tf.random.set_seed (the image encoder's
  training does): the record shuffle is stateless, so the tiles still come, and their record
  order does not depend on that global seed."""
  path = write_tfrecord(str(tmp_path / 'mixed.gz'), _mixed_codes())
  _, files, packed, compression = data.code_shapes(path)

  def first_batches():
    dataset = data.training_tiles(files, packed, compression, 4, batch_size=3, tile=8, seed=1)
    return [batch.numpy() for batch in dataset.take(5)]

  try:
    tf.random.set_seed(5)
    seeded = first_batches()
  finally:
    tf.random.set_seed(None)
  assert len(seeded) == 5 and all(batch.shape[0] >= 3 for batch in seeded)


def test_a_resumed_tiled_run_continues_the_same_batches(tmp_path):
  path = write_tfrecord(str(tmp_path / 'mixed.gz'), _mixed_codes())
  fresh = list(train_loop.training_dataset(path, TRAIN, seed=4)[0].take(7))
  resumed = list(train_loop.training_dataset(path, TRAIN, seed=4, skip_batches=5)[0].take(2))
  for want, got in zip(fresh[5:], resumed):
    np.testing.assert_array_equal(got.numpy(), want.numpy())
  other_seed = list(train_loop.training_dataset(path, TRAIN, seed=5)[0].take(7))
  assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(fresh, other_seed))


def test_mixed_depths_in_one_split_are_one_line_error(tmp_path):
  path = write_tfrecord(str(tmp_path / 'depths.gz'),
                        [np.zeros((4, 4, 4), np.uint8), np.zeros((5, 3, 2), np.uint8)])
  with pytest.raises(UserError, match=r'depths\.gz: codes of depths \[2, 4\] in one split'):
    train_loop.check_data(MODEL, path)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('mixed')
  codes = _mixed_codes()
  path = write_tfrecord(str(root / 'codes.gz'), codes)
  trainer = train_loop.Trainer(MODEL, TRAIN, str(root / 'train'), seed=2)
  result = trainer.fit(path, 12, eval_patterns=path, log_every=6)
  model_dir = trainer.export(str(root / 'train' / 'model'))
  return trainer, result, codes, path, model_dir


def test_pooled_eval_is_total_bits_over_total_bits_of_codes_alone(trained):
  trainer, result, codes, path, _ = trained
  assert result.steps == 12 and result.code_bits_per_second > 0
  alone = [_alone_layer_bits(trainer.model, code) for code in codes]
  counts = [code.shape[0] * code.shape[1] * MODEL.layer_depth for code in codes]
  pooled = sum(row.sum() for row in alone) / sum(2 * n for n in counts)
  assert result.eval_code_length == pytest.approx(pooled, rel=1e-6)
  for batch_size in (1, 3, 64):  # whatever the batching, the same figure
    length, per_layer = trainer.evaluate(path, batch_size=batch_size)
    assert length == pytest.approx(pooled, rel=1e-6)
    for layer in range(2):
      assert per_layer[layer] == pytest.approx(
          sum(row[layer] for row in alone) / sum(counts), rel=1e-6)


def test_code_length_of_input_gives_each_code_its_own_figure(trained):
  trainer, result, codes, path, model_dir = trained
  report = input_code_length.code_length_of_input(model_dir, path)
  alone = [_alone_layer_bits(trainer.model, code) for code in codes]
  per_code = [row.sum() / code[..., :4].size for row, code in zip(alone, codes)]
  np.testing.assert_allclose(report['per_code_bits_per_bit'], per_code, rtol=1e-6)
  assert report['mean_code_bits_per_bit'] == pytest.approx(np.mean(per_code), rel=1e-6)
  assert report['bits_per_bit'] == pytest.approx(result.eval_code_length, rel=1e-6)
  assert report['shapes'] == len(set(SHAPES)) and report['samples'] == 20


def test_saved_model_figures_of_a_mixed_batch_are_those_of_each_code_alone(trained):
  _, _, codes, _, model_dir = trained
  loaded = tf.saved_model.load(model_dir)
  serve, labels = loaded.signatures['serving_default'], loaded.signatures['transformed_labels']
  serialized = tf.constant([codes_format.encode_example(code) for code in codes])
  mixed = serve(examples=serialized)
  mixed_labels = labels(examples=serialized)['bits'].numpy()
  uniform = [i for i, shape in enumerate(SHAPES) if shape == (8, 8)]
  together = serve(examples=tf.gather(serialized, uniform))  # the batched path of one shape
  width = max(code.size for code in codes)
  assert mixed['probs'].shape == (20, width) and mixed_labels.shape == (20, width)
  for i, code in enumerate(codes):
    one = serve(examples=serialized[i:i + 1])
    n = code.size
    assert mixed['num_bits'].numpy()[i] == n == one['num_bits'].numpy()[0]
    assert mixed['code_length_bits'].numpy()[i] == pytest.approx(
        one['code_length_bits'].numpy()[0], rel=1e-6)
    np.testing.assert_allclose(mixed['layer_code_length_bits'].numpy()[i],
                               one['layer_code_length_bits'].numpy()[0], rtol=1e-6)
    np.testing.assert_array_equal(mixed['layer_num_bits'].numpy()[i],
                                  [code.size / 2] * 2)
    np.testing.assert_allclose(mixed['probs'].numpy()[i, :n], one['probs'].numpy()[0], atol=1e-6)
    assert (mixed['probs'].numpy()[i, n:] == 0.5).all()
    np.testing.assert_array_equal(mixed_labels[i, :n], code.reshape(-1))
    assert not mixed_labels[i, n:].any()
    if i in uniform:
      assert together['code_length_bits'].numpy()[uniform.index(i)] == pytest.approx(
          one['code_length_bits'].numpy()[0], rel=1e-6)


@pytest.mark.e2e
def test_cli_imports_trains_measures_and_round_trips_mixed_shapes(tmp_path, capsys):
  codes_dir, examples = tmp_path / 'npz', str(tmp_path / 'examples')
  os.makedirs(codes_dir)
  codes = _mixed_codes(seed=9)
  for i, code in enumerate(codes):
    codes_format.write_npz(str(codes_dir / f'code_{i:02d}.npz'), code, 4)  # layer_depth 4
  assert cli.main(['import-codes', '--input-dir', str(codes_dir), '--output-dir', examples,
                   '--splits', 'train:3,eval:1']) == 0
  capsys.readouterr()
  model_config, train_config = tmp_path / 'model.json', tmp_path / 'train.json'
  model_config.write_text(json.dumps(MODEL.to_dict()))
  train_config.write_text(json.dumps(TRAIN.to_dict()))
  train_dir = str(tmp_path / 'run')
  assert cli.main(['train', '--model-config', str(model_config), '--train-config',
                   str(train_config), '--examples', examples, '--train-dir', train_dir,
                   '--steps', '4', '--log-every', '2']) == 0
  out, err = capsys.readouterr()
  assert 'in tiles of up to 8x8' in err and 'step 4/4' in err
  assert "the code's layer_depth is 4 but" in err  # the encoder's grouping is not the model's
  assert 'eval ' in out and '(pooled: total bits / total code bits)' in out
  model = os.path.join(train_dir, 'model')
  sample = str(codes_dir / 'code_16.npz')  # 13 x 21
  assert cli.main(['code-length', '--model', model, '--input', sample]) == 0
  out, err = capsys.readouterr()
  assert 'bits/bit (pooled: total bits / total code bits)' in out and 'per code ' in out
  assert "the code's layer_depth is 4 but" in err
  assert cli.main(['compress', '--model', model, sample, '-o', str(tmp_path / 'one.nec')]) == 0
  assert "code_16.npz: the code's layer_depth is 4 but" in capsys.readouterr().err
  mixed = write_tfrecord(str(tmp_path / 'mixed.tfrecord.gz'), codes)
  packed, restored = str(tmp_path / 'mixed.nec'), str(tmp_path / 'restored.tfrecord.gz')
  assert cli.main(['compress', '--model', model, mixed, '-o', packed]) == 0
  assert cli.main(['decompress', '--model', model, packed, '-o', restored]) == 0
  back = codes_format.read_codes(restored)[0]
  assert len(back) == 20
  for (_, got), want in zip(back, codes):
    np.testing.assert_array_equal(got, want)
