"""Subcommands of `entropy-coder`, one module each (see entropy_coder.cli)."""
