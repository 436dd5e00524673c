"""Paths that may be URLs: what counts as remote, and how a name is joined to either, once.

Pipeline roots, push destinations and input folders may be `gs://`, `s3://` or other
filesystem URLs (read through tf.io.gfile) on Kubeflow, or local paths. A URL is kept as the
user wrote it and joined with "/"; a local path is checked, made absolute and joined as the
operating system does.
"""
import os


def is_url(path):
  """True for a filesystem URL (`scheme://...`), False for a local path."""
  return '://' in path


def join(root, name):
  """`root`/`name`: with "/" under a URL, os.path.join under a local path."""
  return root.rstrip('/') + '/' + name if is_url(root) else os.path.join(root, name)
