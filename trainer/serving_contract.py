"""The contract between the Trainer's SavedModel and its readers (the Evaluator, the CLI), once.

Names only, no TensorFlow: trainer/export.py builds the signatures with these names, and
pipeline/eval_config.py (the TFMA ModelSpec) and pipeline/tfma_metrics.py (the CodeLength
metric) read the model through them. docs/DESIGN.md ("Signatures of the SavedModel") describes
the shapes.
"""

# ---- signatures ----------------------------------------------------------------------------------

# (examples: tf.string [B]) -> the outputs below, `probs` flattened to [B, N].
SERVING_SIGNATURE = 'serving_default'
# (examples: tf.string [B]) -> {LABEL_KEY: f32 [B, N]}: the code itself is the label, so TFMA
# gets it through this preprocessing function (ModelSpec.preprocessing_function_names).
LABELS_SIGNATURE = 'transformed_labels'
# (codes: f32 [B, H, W, D] in {0,1}) -> the outputs below, `probs` shaped [B, H, W, D].
DENSE_SIGNATURE = 'serving_dense'

# Input names of the signatures.
EXAMPLES_INPUT = 'examples'
CODES_INPUT = 'codes'

# ---- outputs of serving_default and serving_dense -----------------------------------------------

PROBS = 'probs'  # P(bit = 1), C order of the coded [H, W, D]; [B, largest N], 0.5-padded
CODE_LENGTH_BITS = 'code_length_bits'  # [B]: sum of -log2 p(true bit)
NUM_BITS = 'num_bits'  # [B]: coded bits
# [B, layer_count] (zero for layers the code does not have)
LAYER_CODE_LENGTH_BITS = 'layer_code_length_bits'
LAYER_NUM_BITS = 'layer_num_bits'  # [B, layer_count]

# ---- the label ------------------------------------------------------------------------------------

LABEL_KEY = 'bits'  # the output of LABELS_SIGNATURE: the coded bits, [B, N]
