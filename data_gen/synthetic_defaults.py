"""The synthetic source's defaults (code shapes, dataset size, sharding, Beam work items), in a
module without numba, numpy or Beam.

data_gen/synthetic.py generates the codes (numba, a quarter of a second to import),
data_gen/beam_source.py and data_gen/dataset_writer.py run and write them (Beam); the `generate`
and `sample` commands print these defaults in their `--help`, which stays instant, so the
numbers live here and those modules take them from here.
"""

DATASET_SHAPE = (35, 48, 8)      # the original's gen_synthetic_dataset.py: [H, W, D]
DATASET_COUNT = 1000             # and its --count default
SAMPLE_SHAPE = (31, 36, 8)       # gen_synthetic_single.py: another size on purpose (the model is
SAMPLE_LAYER_DEPTH = 2           # fully convolutional), and its bits per iteration

# Auto shard count of a written dataset: about this many samples (~8.5 MB at 35x48x8) per shard.
SAMPLES_PER_SHARD = 5000
# Samples per Beam work item: big enough that the kernel and Beam's per-element cost stay small,
# small enough that 20,000 samples still make ~20 items to spread over workers (big codes get
# fewer, beam_source.auto_bundle_size).
DEFAULT_BUNDLE_SIZE = 1024
