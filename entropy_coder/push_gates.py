"""The defaults of the two gates a model passes before the Pusher pushes it, defined once.

* The Evaluator's blessing (pipeline/eval_config.py): `code_length <= max_code_length` bits
  per bit, and no worse than the baseline by more than `change_tolerance`.
* RealCompressionCheck's round-trip blessing (components/real_compression.py): the real
  payload at most `max_real_over_theory` (relative) above the model's code length.

A module of its own, without imports, because the modules that need these values are not
equally light: pipeline/configs.py (RunSettings, read by the CLI at start-up) must not import
TFMA or TFX, which eval_config and the component import at module level.
"""

# Never worse than storing the bits as they are.
DEFAULT_MAX_CODE_LENGTH = 1.0
# No worse than the baseline (TFMA checks candidate - baseline <= this; docs/PIPELINE.md).
DEFAULT_CHANGE_TOLERANCE = 0.0
# Real payload at most 2 % above the theoretical code length.
DEFAULT_MAX_REAL_OVER_THEORY = 0.02
