"""Toy models of superposition and synthetic ground-truth data for SAE benchmarks."""
