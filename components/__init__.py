"""The pipeline's custom ExampleGens: both produce the same standard `Examples` artifact.

* `SyntheticCodeGen(count, shape, seed, splits)`: the original's synthetic source, in Beam.
* `NpzCodeImport(input_dir, splits)`: a directory of the user's own `.npz` codes.

Both write `Split-<name>/` GZIP TFRecords of our tf.Example layout (entropy_coder.codes_format)
and assign sample / file `i` to `split_of(i, splits)` (default train 9 : eval 1).
"""
from entropy_coder.components.npz_code_import import NpzCodeImport
from entropy_coder.components.synthetic_code_gen import SyntheticCodeGen

__all__ = ['NpzCodeImport', 'SyntheticCodeGen']
