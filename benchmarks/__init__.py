"""Benchmarks: FPS against PyTorch eager, FLOPs and parameters."""
