"""Neural entropy coder for binary image codes (arXiv 1703.10114), as a TFX pipeline."""
