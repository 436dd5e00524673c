# The image every Kubeflow Pipelines task of this project runs in.
#
#   docker build -t REGISTRY/entropy-coder:TAG .
#   docker push REGISTRY/entropy-coder:TAG
#   entropy-coder pipeline compile --output pipeline.yaml --image REGISTRY/entropy-coder:TAG \
#       --pipeline-root gs://BUCKET/entropy-coder
#
# Each compiled task runs `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor
# --executor_class_path <class> ...` in this image, so the image holds the pinned stack (TFX,
# TensorFlow, TFMA, Beam, kfp) and this project: our ExampleGens, the Trainer's run_fn, the TFMA
# metric module, the real-compression component and the baseline picker (with its Evaluator
# executor) are imported from here by module path.
FROM python:3.10.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/entropy-coder

# 1. The pinned third-party set on its own layer: changing our code does not reinstall TensorFlow.
#    constraints.txt is the full known-good freeze, so installing it as requirements reproduces
#    exactly the set the tests ran with, without resolver backtracking.
COPY constraints.txt ./
RUN pip install -r constraints.txt
# 1b. GPU workers (`docker build --build-arg GPU=1 ...`): the CUDA 12 libraries of the pinned
#     TensorFlow, as `make install GPU=1` (each nvidia-* wheel is pinned exactly by tensorflow
#     2.16.2's own metadata, so they are not in constraints.txt, which is installed whole above).
ARG GPU=0
RUN if [ "$GPU" = 1 ]; then pip install -c constraints.txt 'tensorflow[and-cuda]==2.16.2'; fi

# 2. The project itself (no dependency resolution: everything it needs is already pinned above).
COPY setup.py pyproject.toml README.md ./
COPY entropy_coder ./entropy_coder
COPY codec ./codec
COPY components ./components
COPY data_gen ./data_gen
COPY pipeline ./pipeline
COPY trainer ./trainer
COPY configs ./configs
RUN pip install --no-deps . \
 && pip check \
 && cd / && python -c "import entropy_coder.components, entropy_coder.trainer.run_fn, \
entropy_coder.pipeline.tfma_metrics, entropy_coder.components.real_compression, \
entropy_coder.components.baseline_picker, tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"

# Tasks run from a neutral directory so only the installed package is importable.
WORKDIR /
# KFP sets the command and args of every task; this default only shows the CLI.
CMD ["entropy-coder", "--help"]
