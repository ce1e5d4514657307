"""Matting engine: background prior, Bayesian depth stages, networks, compositing, metrics."""
