"""Shared test set-up: quiet TensorFlow's start-up noise for every test process."""
import os
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.filterwarnings('ignore', category=FutureWarning)
