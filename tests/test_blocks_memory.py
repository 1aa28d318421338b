"""Telling a loss's ties apart holds a bounded number of member sets at once.

Each member is tested against the rest: m sets of m - 1 members held at once (and each one's
bytes kept as a cache key) took 16 m^2 bytes, past --max-memory: an L1 term on 8,103 zeros of
a pruned 128 x 128 weight peaked at 2.1 GB, 193 MB at 64 x 64 (outside test t38b F2). The
tests go AGAINST_REST members at a time, and a set's key is 16 bytes. Twin: the split found is
the same (interacting pairs joined, the others apart).
"""

from __future__ import annotations

import numpy as np

from gradcli.numeric import blocks


class _Probe:
    """Interacts where a set holds both members of a pair (k, k + m // 2) for k < 5: far apart
    in flat order, so that no cut near the middle parts them, and each member is tested against
    the rest."""

    def __init__(self, m):
        self.largest = 0
        self.alone = {}
        self.idx, self.tensor, self.half = np.arange(m), np.zeros(m, dtype=np.int64), m // 2

    def interacts(self, tests):
        self.largest = max(self.largest, len(tests))
        out = []
        for x, y in tests:
            xs, ys = set(x.tolist()), set(y.tolist())
            out.append(any((k in xs and k + self.half in ys) or (k + self.half in xs and k in ys)
                           for k in range(5)))
        return np.array(out)


def test_members_against_the_rest_go_a_chunk_at_a_time():
    m = 3 * blocks.AGAINST_REST + 7
    probe = _Probe(m)
    labels, tests = blocks._components(np.arange(m), probe, each=0.0, budget=np.inf)
    assert probe.largest <= blocks.AGAINST_REST
    for k in range(5):  # the pairs found, and nothing else joined
        assert labels[k] == labels[k + m // 2]
    assert len(np.unique(labels)) == m - 5
    assert tests >= m


def test_a_set_key_is_small_and_order_free():
    a = np.arange(10_000)
    assert len(blocks._key(a)) == 16
    assert blocks._key(a[::-1]) == blocks._key(a) != blocks._key(a[1:])
