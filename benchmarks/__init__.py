"""Benchmarks: speed and quality against peers; the paper's reproductions in reproduce/."""
