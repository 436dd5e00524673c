"""The default encoder of `pipeline run --images`: trained on first use, re-used afterwards.

No weights ship in the repository (the default's networks are about 1 MB of float32 that
training reproduces from the seed); instead the first `pipeline run --images DIR` without
`--encoder` trains the default EncoderConfig on the packaged photographs into
`<pipeline root>/image_encoder/` (about 15 minutes on 2 CPU cores; resumed if interrupted)
and every later run uses it as it is.
"""
import os
import sys

from entropy_coder.image_encoder import config as config_lib

DIRNAME = 'image_encoder'


def default_encoder_dir(pipeline_root):
  return os.path.join(pipeline_root, DIRNAME)


def ensure_trained(encoder_dir, config=None):
  """Trains (or finishes training) `config` (default: the default EncoderConfig) in
  `encoder_dir` unless it is fully trained already. -> encoder_dir."""
  config = config or config_lib.EncoderConfig()
  if os.path.exists(config_lib.encoder_json_path(encoder_dir)):
    document = config_lib.read_encoder_json(encoder_dir)
    if document.get('trained_steps', 0) >= document['config'].steps and 'evaluation' in document:
      return encoder_dir
  from entropy_coder.image_encoder import training  # pylint: disable=import-outside-toplevel
  print(f'training the default image encoder into {encoder_dir} (first use; resumable)',
        file=sys.stderr, flush=True)
  document = training.train(encoder_dir, training.resolve_config(encoder_dir, config))
  print('\n'.join(training.format_evaluation(document['evaluation'])), file=sys.stderr, flush=True)
  return encoder_dir
