"""The synthetic source's default code shapes, in a module without numba or numpy.

data_gen/synthetic.py generates the codes (numba, a quarter of a second to import); the
`generate` and `sample` commands print these defaults in their `--help`, which stays instant, so
the numbers live here and synthetic.py takes them from here.
"""

DATASET_SHAPE = (35, 48, 8)      # the original's gen_synthetic_dataset.py: [H, W, D]
SAMPLE_SHAPE = (31, 36, 8)       # gen_synthetic_single.py: another size on purpose (the model is
SAMPLE_LAYER_DEPTH = 2           # fully convolutional), and its bits per iteration
