"""The TFX Trainer's entry point: `Trainer(run_fn='entropy_coder.trainer.run_fn.run_fn', ...)`.

custom_config keys: `model_config` and `train_config` (dicts with the original's JSON keys),
optional `seed` (int, default 0), `log_every` (steps, default 100), `checkpoint_dir` (a
stable directory to resume from when the Trainer is restarted; default: this run's
model_run_dir), `xla` (true / false; default: on when training on GPUs, off on CPU) and
`eval_every` (steps, default 0: the eval split only at the end): with N > 0 the eval split is
evaluated every N steps and the export holds the weights of the evaluation with the lowest
eval code length, not the last step's (Trainer.best_weights; the pipeline sets it,
pipeline/configs.py `trainer_eval_every`). `train_args.num_steps` is the step limit; the eval
split is evaluated whole.

Devices and machines (trainer/distribute.py): the GPUs present, and TF_CONFIG when the Trainer
runs as several workers (a training operator, Vertex worker pools): every worker calls run_fn
with the same fn_args; only the chief writes checkpoints, logs and the export, and no worker
returns before the chief's export is complete (TFX then checks that serving_model_dir exists).
"""
from entropy_coder.errors import UserError
from entropy_coder.trainer import config as config_lib
from entropy_coder.trainer import train_loop


# TFX Trainer calls this.
def run_fn(fn_args):
  custom = fn_args.custom_config or {}
  model_config = config_lib.model_config_from_dict(custom.get('model_config'), 'Trainer custom_config model_config')
  train_config = config_lib.train_config_from_dict(custom.get('train_config'), 'Trainer custom_config train_config')
  xla = custom.get('xla')
  if xla is not None and not isinstance(xla, bool):
    raise UserError(f'Trainer custom_config: "xla" must be true, false or absent, got {xla!r}')
  eval_every = custom.get('eval_every', 0)
  if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
    raise UserError(f'Trainer custom_config: "eval_every" must be an int >= 0, got {eval_every!r}')
  train_dir = custom.get('checkpoint_dir') or fn_args.model_run_dir
  # The Trainer first: under TF_CONFIG its MultiWorkerMirroredStrategy must precede any TF op.
  trainer = train_loop.Trainer(model_config, train_config, train_dir, seed=int(custom.get('seed', 0)),
                               model_source='Trainer custom_config model_config', xla=xla)
  trainer.write_run_config()
  result = trainer.fit(fn_args.train_files, steps=fn_args.train_steps, eval_patterns=fn_args.eval_files,
                       log_every=int(custom.get('log_every', 100)), eval_every=eval_every)
  trainer.export(fn_args.serving_model_dir)
  return result
