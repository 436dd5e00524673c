"""Real lossless compression of binary codes with the trained progressive model.

    codes --(engine: incremental model, per pixel)--> P(bit) --(range_coder)--> bytes
                                                          bitstream: the file around the bytes

`compress(codes, model_files)` / `decompress(data, model_files)` are the API; `model_files` comes
from `entropy_coder.model_files.read_model_files(model_dir)`. docs/FORMAT.md describes the file.
"""
from entropy_coder.codec.api import (CodingStats, check_model, compress, compress_each,
                                     compress_with_stats, decompress, decompress_each,
                                     decompress_with_stats, read_header, warm_up)

__all__ = ['CodingStats', 'check_model', 'compress', 'compress_each', 'compress_with_stats',
           'decompress', 'decompress_each', 'decompress_with_stats', 'read_header', 'warm_up']
