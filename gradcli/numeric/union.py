"""Disjoint sets of 0 ... n-1 (union-find): which members a loss's interactions join
(numeric/blocks.py), which a tie's links already join (numeric/links.py)."""

from __future__ import annotations

import numpy as np


class Union:
    """Each set named by its smallest member."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, k: int) -> int:
        parent = self.parent
        while parent[k] != k:
            parent[k] = parent[parent[k]]  # halve the path on the way up
            k = parent[k]
        return int(k)

    def join(self, a: int, b: int) -> bool:
        """Join the sets of a and b; whether they were apart."""
        ra, rb = self.find(int(a)), self.find(int(b))
        self.parent[max(ra, rb)] = min(ra, rb)
        return ra != rb

    def labels(self) -> np.ndarray:
        """A set number per member, 0 ... k-1."""
        roots = [self.find(i) for i in range(self.parent.size)]
        return np.unique(roots, return_inverse=True)[1].ravel()
