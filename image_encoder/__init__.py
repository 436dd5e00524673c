"""A reference binary image encoder: pictures -> the binary codes this product compresses.

A one-shot residual binary autoencoder (docs/IMAGE_ENCODER.md): per iteration a convolutional
encoder of what is left to code, a sign binariser of `bits_per_iteration` channels at 1/16 of
the picture's height and width, and a decoder back to pixels; the reconstruction is the sum of
the decoders' outputs.

* `config`: the encoder's settings and its directory (`encoder.json` + TF checkpoints);
* `model`: the tf_keras networks and the coding arithmetic (train, encode, decode);
* `training`: random crops and the resumable training loop;
* `api`: what other code calls (`load_encoder`, `encode_image`, `decode_code`, PSNR);
* `files`: images and code files on disk (padding, the size sidecar);
* `default_encoder`: the encoder `pipeline run --images` trains on first use;
* `chain_picture`: docs/IMAGE_ENCODER.md's figure (reconstructions, bits per pixel before and
  after entropy coding).
"""
