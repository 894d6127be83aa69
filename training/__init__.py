"""Reel's training recipes (PyTorch) and the synthetic data they train on."""
