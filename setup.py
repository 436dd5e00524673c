"""Installs the neural entropy coder as one import package, `entropy_coder`.

The repository keeps the product's folders at the top level (`pipeline/`, `components/`,
`trainer/`, `data_gen/`, `codec/`), as users asked. Installed bare, names like `pipeline` or
`components` would be ambiguous with other distributions, so `package_dir` maps each folder
under the single namespace `entropy_coder`: `pipeline/` is imported as `entropy_coder.pipeline`,
never as `pipeline`. Nothing in the project imports the bare folder names.
"""
import setuptools

_FOLDERS = {
    'entropy_coder': 'entropy_coder',
    'entropy_coder.codec': 'codec',
    'entropy_coder.components': 'components',
    'entropy_coder.data_gen': 'data_gen',
    'entropy_coder.image_encoder': 'image_encoder',
    'entropy_coder.pipeline': 'pipeline',
    'entropy_coder.trainer': 'trainer',
}

setuptools.setup(
    name='neural-entropy-coder',
    version='0.1.0',
    description='Neural entropy coder for binary image codes, as a TFX / Kubeflow pipeline.',
    python_requires='>=3.10,<3.11',
    packages=list(_FOLDERS),
    package_dir=_FOLDERS,
    install_requires=[
        'tfx==1.16.0',
        'tensorflow==2.16.2',
        'tf-keras==2.16.0',
        'tensorflow-model-analysis==0.47.1',
        'apache-beam[gcp]',  # version pinned in constraints.txt (constraints cannot carry extras)
        'kfp==2.0.1',
        'protobuf==3.20.3',
        'numpy<2',
        'numba',
        'constriction==0.5.0',
        'zstandard',
        'matplotlib',
        # Images in, and the classical baselines of bench/bench_real_codes.py (JPEG XL lossless).
        'pillow',
        'scikit-learn',   # its sample images (besides matplotlib's sample_data)
        'imagecodecs',
    ],
    extras_require={
        'test': ['pytest', 'pytest-xdist', 'pytest-timeout', 'hypothesis'],
        # `make install GPU=1`: the CUDA 12 runtime wheels of the pinned TensorFlow (its Linux
        # wheel is already built with CUDA; this extra adds the nvidia-* libraries, each pinned
        # exactly by tensorflow 2.16.2's own metadata): several GB more; docs/PIPELINE.md.
        'gpu': ['tensorflow[and-cuda]==2.16.2'],
    },
    entry_points={'console_scripts': ['entropy-coder=entropy_coder.cli:main']},
)
