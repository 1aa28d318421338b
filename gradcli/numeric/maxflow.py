"""Maximum flow (Dinic) and flows within bounds, in pure Python: what numeric/routes.py asks
whether a gradient is one routing of each max's upstream gradient to its tied maxima.

Capacities are floats, ``math.inf`` allowed; a residual of at most ``tiny`` counts as none, so
round-off cannot make a path out of nothing. The networks are small (the tied windows of one
tensor and their maxima), so plain lists beat arrays here.
"""

from __future__ import annotations

import math
from collections import deque


class Network:
    """A directed graph of ``n`` nodes whose edges carry flow up to their capacity."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.out: list[list[int]] = [[] for _ in range(n)]  # edge ids leaving each node
        self.head: list[int] = []  # edge id -> the node it enters; id ^ 1 is its reverse
        self.cap: list[float] = []  # residual capacity
        self.total: list[float] = []  # the capacity it was given

    def add(self, u: int, v: int, cap: float) -> int:
        """An edge u -> v of capacity ``cap``; returns its id (for ``flow``)."""
        e = len(self.head)
        self.head += [v, u]
        self.cap += [cap, 0.0]
        self.total += [cap, 0.0]
        self.out[u].append(e)
        self.out[v].append(e + 1)
        return e

    def flow(self, e: int) -> float:
        """What edge ``e`` carries: its reverse's residual (that starts at 0)."""
        return self.cap[e ^ 1]

    def maxflow(self, s: int, t: int, tiny: float = 0.0) -> float:
        """Push as much as the capacities allow from ``s`` to ``t``; returns the amount."""
        pushed = 0.0
        while True:
            level = self._levels(s, tiny)
            if level[t] < 0:
                return pushed
            pushed += self._blocking(s, t, level, tiny)

    def reachable(self, s: int, tiny: float = 0.0) -> list[bool]:
        """The nodes a residual path from ``s`` reaches: after ``maxflow``, a minimum cut's
        source side."""
        return [lv >= 0 for lv in self._levels(s, tiny)]

    def _levels(self, s: int, tiny: float) -> list[int]:
        level = [-1] * self.n
        level[s] = 0
        todo = deque([s])
        while todo:
            u = todo.popleft()
            for e in self.out[u]:
                v = self.head[e]
                if level[v] < 0 and self.cap[e] > tiny:
                    level[v] = level[u] + 1
                    todo.append(v)
        return level

    def _blocking(self, s: int, t: int, level: list[int], tiny: float) -> float:
        """Augment along shortest paths until none is left at these levels (an iterative
        depth-first search: a recursive one would overflow Python's stack on long chains)."""
        nxt = [0] * self.n  # per node, the first of its edges not yet found useless
        pushed = 0.0
        path: list[int] = []  # edge ids from s
        u = s
        while True:
            if u == t:
                amount = min(self.cap[e] for e in path)
                if not math.isfinite(amount):
                    raise ValueError("a path of infinite capacity: the flow is unbounded")
                for e in path:
                    self.cap[e] -= amount
                    self.cap[e ^ 1] += amount
                pushed += amount
                # back to the tail of the first edge this push used up
                cut = next(k for k, e in enumerate(path) if self.cap[e] <= tiny)
                del path[cut:]
                u = self.head[path[-1]] if path else s
                continue
            edges = self.out[u]
            while nxt[u] < len(edges):
                e = edges[nxt[u]]
                v = self.head[e]
                if self.cap[e] > tiny and level[v] == level[u] + 1:
                    break
                nxt[u] += 1
            if nxt[u] < len(edges):
                path.append(edges[nxt[u]])
                u = self.head[edges[nxt[u]]]
                continue
            if u == s:
                return pushed
            level[u] = -1  # a dead end at these levels
            path.pop()
            u = self.head[path[-1]] if path else s
            nxt[u] += 1


def feasible(n: int, edges: list[tuple[int, int, float, float]], tiny: float = 0.0):
    """A circulation on ``n`` nodes with each edge (u, v, lo, hi) carrying between lo and hi
    (0 <= lo <= hi), flow conserved at every node: the flows per edge, or None when there is
    none. Each lower bound is sent up front (u owes it, v is owed it) and a maximum flow from
    those owed to those owing settles the debts: a circulation exists exactly when it settles
    them all (the standard reduction, Ahuja-Magnanti-Orlin 6.7)."""
    net = Network(n + 2)
    src, snk = n, n + 1
    balance = [0.0] * n
    ids = []
    for u, v, lo, hi in edges:
        ids.append(net.add(u, v, hi - lo))
        balance[v] += lo
        balance[u] -= lo
    owed = 0.0
    for v, b in enumerate(balance):
        if b > 0:
            net.add(src, v, b)
            owed += b
        elif b < 0:
            net.add(v, snk, -b)
    settled = net.maxflow(src, snk, tiny)
    if settled < owed - tiny * max(1, len(edges)):
        return None
    return [lo + net.flow(e) for e, (_, _, lo, _) in zip(ids, edges, strict=True)]
