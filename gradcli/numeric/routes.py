"""Routes: at the ties of a max, the gradient must be one routing of each output's upstream
gradient to that output's own tied maxima.

An output z_o = max of some coordinates (a max-pool window) whose maximum is held by several
of them has no derivative there; its Clarke generalized gradient is every split of g_o over
those tied maxima, and a gradient of sum_o g_o z_o is valid exactly when it is
sum_o g_o p_o, p_o a probability vector over output o's tied maxima. Intervals per coordinate
and sums per group of tied coordinates (numeric/ties.py) are looser: on an input of equal
values, where every element is tied in every window holding it, a window's gradient sent to an
element outside the window but inside a neighbour passes them. Membership itself is a flow:
each output of positive g_o supplies g_o to its tied maxima, each of negative g_o draws |g_o|
from theirs, and every coordinate's net must be its gradient (within the check's tolerance);
numeric/maxflow.py decides it.

Honest: the layer declares only which coordinates each output is the maximum of
(``Layer.maxima``, its windows), and that is verified at the point (the forward must equal
each row's maximum); which of them are tied comes from the forward's values there, exactly as
``Layer.kinks`` sees a tie (equal values), never from the backward under test. The values put
in place are a valid gradient (a routing), the one nearest the analytic gradient found; the
check falls back to the intervals where that gradient leaves the finite differences' own
intervals (a declaration the numbers do not bear out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradcli.numeric.maxflow import Network, feasible

SHOWN = 3  # windows or coordinates a certificate names before "and k more"


@dataclass(frozen=True)
class Routed:
    """The values a routing puts in place at tied coordinates."""

    coords: np.ndarray  # flat indices (the tensor's), all tied in some window with a tie
    values: np.ndarray  # a valid gradient's entries there
    windows: int  # outputs whose maximum is tied (and upstream gradient nonzero)
    valid: bool  # the analytic gradient is a routing, within the tolerance
    why: str = ""  # when not: a certificate (windows that cannot route what they must)


def maxima_of(engine, name: str) -> np.ndarray | None:
    """The layer's declared windows for ``name`` (or the built-in's its forward agreed with),
    when they reproduce the forward at the point; else None."""
    declare = engine.declared_maxima or engine.layer.maxima
    x = engine.t64.get(name)
    if declare is None or x is None:
        return None
    M = declare(name, engine.shapes, engine.options)
    if M is None:
        return None
    M = np.asarray(M, dtype=np.int64)
    out = np.asarray(engine.layer.forward(engine.t64, engine.options)[0]).ravel()
    if M.ndim != 2 or M.shape[0] != out.size or M.shape[0] != engine.g.size:
        return None
    top = _tops(M, x.ravel())
    if np.iscomplexobj(out) or not np.array_equal(top, out):  # NaN too: no routing to check
        return None
    return M


def _tops(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(M >= 0, x[M], -np.inf).max(axis=1, initial=-np.inf)


def route(engine, name: str, analytic: np.ndarray, atol: float, rtol: float,
          at: np.ndarray) -> Routed | None:  # fmt: skip
    """The values compared at the coordinates of ``at`` (flat indices at a kink itself) that
    are tied maxima of some output: a valid gradient within atol + rtol |a| of the analytic
    one ``a`` where there is one, else the valid one a maximum flow finds nearest (each
    output's gradient delivered to its maxima as far as ``a`` takes it, the rest to its first
    maximum). None: no declared windows, or no tie among them."""
    M = maxima_of(engine, name)
    if M is None:
        return None
    x, g = engine.t64[name].ravel(), engine.g.ravel()
    top = _tops(M, x)
    tied = (M >= 0) & (np.where(M >= 0, x[M], -np.inf) == top[:, None])
    count = tied.sum(axis=1)
    alone = count == 1  # the output's one maximum takes all of g_o: no choice
    fixed = np.bincount(M[tied & alone[:, None]], g[alone], minlength=x.size)
    multi = np.flatnonzero(count >= 2)
    elements = np.unique(M[multi][tied[multi]])
    if not elements.size:
        return None
    a = np.asarray(analytic, dtype=np.float64).ravel()
    scale = max(float(np.abs(g).max()), float(np.abs(a[elements]).max()), 1e-300)
    claim = (a[elements] - fixed[elements]) / scale  # what the ties must give each element
    slack = 0.9 * (atol + rtol * np.abs(a[elements])) / (1 + rtol) / scale
    used = multi[g[multi] != 0]
    net, valid = _within(used, M, tied, g / scale, elements, claim, slack)
    why = ""
    if not valid:
        net, why = _nearest(engine, name, used, M, tied, g / scale, elements, claim, scale)
    values = fixed[elements] + net * scale
    keep = np.isin(elements, at)
    return Routed(elements[keep], values[keep], int(used.size), valid, why)


def _edges(used, M, tied, elements):
    """(window, position among ``elements``) for every tied maximum of the windows used."""
    where = {int(e): k for k, e in enumerate(elements)}
    return [(w, where[int(e)]) for w in used for e in M[w][tied[w]]]


def _within(used, M, tied, g, elements, claim, slack):
    """(each element's net from the windows, whether every net is within its slack of its
    claim): a circulation S -> windows -> elements -> T with each window's supply (or
    draw) exact and each element's net between claim - slack and claim + slack."""
    nw, ne = used.size, elements.size
    S, T = 0, 1
    win = {int(w): 2 + k for k, w in enumerate(used)}
    edges, inflow = [], []
    for w, k in _edges(used, M, tied, elements):
        if g[w] > 0:
            edges.append((win[w], 2 + nw + k, 0.0, math.inf))
            inflow.append((len(edges) - 1, k, 1))
        else:
            edges.append((2 + nw + k, win[w], 0.0, math.inf))
            inflow.append((len(edges) - 1, k, -1))
    for w in used:
        edges.append((S, win[int(w)], g[w], g[w]) if g[w] > 0 else (win[int(w)], T, -g[w], -g[w]))
    low, high = claim - slack, claim + slack
    for k in range(ne):
        e = 2 + nw + k
        edges.append((e, T, max(low[k], 0.0), max(high[k], 0.0)))  # a net inflow
        edges.append((S, e, max(-high[k], 0.0), max(-low[k], 0.0)))  # a net outflow
    edges.append((T, S, 0.0, math.inf))
    flows = feasible(2 + nw + ne, edges, tiny=1e-12)
    net = np.zeros(ne)
    if flows is None:
        return net, False
    for i, k, sign in inflow:
        net[k] += sign * flows[i]
    return net, True


def _nearest(engine, name, used, M, tied, g, elements, claim, scale):
    """A valid routing delivering each window's gradient where the claims take it (a maximum
    flow), the rest to the window's first tied maximum; and the certificate of its failure:
    a set of windows whose gradient must reach elements that, all told, claim less of it."""
    nw, ne = used.size, elements.size
    S, T = 0, 1
    net = Network(2 + nw + ne)
    win = {int(w): 2 + k for k, w in enumerate(used)}
    supply, first, inflow = {}, {}, []
    for w, k in _edges(used, M, tied, elements):
        first.setdefault(w, k)
        if g[w] > 0:
            inflow.append((net.add(win[w], 2 + nw + k, math.inf), k, 1))
        else:
            inflow.append((net.add(2 + nw + k, win[w], math.inf), k, -1))
    for w in used:
        w = int(w)
        supply[w] = net.add(S, win[w], g[w]) if g[w] > 0 else net.add(win[w], T, -g[w])
    for k in range(ne):
        e = 2 + nw + k
        if claim[k] > 0:
            net.add(e, T, claim[k])
        elif claim[k] < 0:
            net.add(S, e, -claim[k])
    net.maxflow(S, T, tiny=1e-12)
    values = np.zeros(ne)
    for i, k, sign in inflow:
        values[k] += sign * net.flow(i)
    for w, e in supply.items():
        values[first[w]] += np.sign(g[w]) * (abs(g[w]) - net.flow(e))
    return values, _certificate(engine, name, net, win, used, M, tied, g, elements, claim, scale)


def _certificate(engine, name, net, win, used, M, tied, g, elements, claim, scale) -> str:
    """Why no routing gives the gradient, from the maximum flow's minimum cut: windows whose
    upstream gradients can go only to elements that, all told, hold less of it (the source's
    side), or elements holding more than the only windows that can give to them give (the
    sink's side). Of the side's connected pieces, the one that misses most."""
    nw = used.size
    for source in (True, False):
        side = net.reachable(0, 1e-12) if source else _reaching(net, 1, 1e-12)
        wins = [int(w) for w in used if side[win[int(w)]]]
        sets = [k for k in range(elements.size) if side[2 + nw + k]]
        if wins:
            break
    else:
        return ""
    pairs = [(w, k) for w, k in _edges(wins, M, tied, elements) if side[2 + nw + k]]
    best, miss = None, 0.0
    for piece_w, piece_e in _pieces(wins, sets, pairs):
        gap = float(sum(g[w] for w in piece_w) - claim[piece_e].sum())
        gap = gap if source else -gap
        if best is None or gap > miss:
            best, miss = (piece_w, piece_e), gap
    piece_w, piece_e = best
    given = float(sum(g[w] for w in piece_w)) * scale
    held = float(claim[piece_e].sum()) * scale
    zs = _names(engine.layer.output.name, [np.unravel_index(w, engine.out_shape) for w in piece_w])
    xs = _names(name, [np.unravel_index(int(elements[k]), engine.t64[name].shape)
                       for k in piece_e])  # fmt: skip
    if not piece_w:
        return f"d{name} at {xs} adds up to {held:.4g}, which no window tied there can give"
    if source:
        return (f"the upstream gradients of {zs}, {given:.4g} in all, can go only to their tied "
                f"maxima {xs}, whose d{name} add up to {held:.4g}")
    return (f"d{name} at {xs}, {held:.4g} in all, can come only from the windows tied there, "
            f"{zs}, whose upstream gradients add up to {given:.4g}")


def _pieces(wins: list[int], sets: list[int], pairs: list[tuple[int, int]]):
    """The connected pieces of windows and elements joined by ``pairs``: (windows, elements)."""
    parent = {("w", w): ("w", w) for w in wins} | {("e", k): ("e", k) for k in sets}

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for w, k in pairs:
        parent[root(("w", w))] = root(("e", k))
    pieces: dict = {}
    for node in parent:
        pieces.setdefault(root(node), ([], []))[node[0] == "e"].append(node[1])
    return list(pieces.values())


def _names(tensor: str, where: list) -> str:
    shown = ", ".join(f"{tensor}[{', '.join(str(int(i)) for i in t)}]" for t in where[:SHOWN])
    more = f" and {len(where) - SHOWN} more" if len(where) > SHOWN else ""
    return (shown + more) or "none"


def _reaching(net: Network, t: int, tiny: float) -> list[bool]:
    """The nodes with a residual path to ``t``."""
    into: list[list[int]] = [[] for _ in range(net.n)]  # edges by the node they enter
    for e, v in enumerate(net.head):
        into[v].append(e)
    seen = [False] * net.n
    seen[t] = True
    todo = [t]
    while todo:
        v = todo.pop()
        for e in into[v]:
            u = net.head[e ^ 1]
            if not seen[u] and net.cap[e] > tiny:
                seen[u] = True
                todo.append(u)
    return seen
