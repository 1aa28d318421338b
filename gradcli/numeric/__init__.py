"""Numerical gradients: difference methods, stacked probes, coloring, incremental
evaluation, sampling, and the cost and memory they take."""
