"""Evaluation: the paper's metrics with intervals."""
