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

import numpy as np

from gradcli.numeric.maxflow import Network, feasible
from gradcli.numeric.ties import groups
from gradcli.records import mutable_record, record

SHOWN = 3  # windows or coordinates a certificate names before "and k more"
# tied pairs (window, maximum) the flows solve in all, the smallest pieces first (pure Python:
# up to 3 s per 10,000 pairs when a routing must move far from first, last and even); the
# elements of pieces beyond keep the intervals' values and a note says so
LIMIT = 20_000


@record
class Routed:
    """The values a routing puts in place at tied coordinates."""

    coords: np.ndarray  # flat indices (the tensor's), all tied in some window with a tie
    values: np.ndarray  # a valid gradient's entries there
    windows: int  # outputs whose maximum is tied (and upstream gradient nonzero)
    valid: bool  # the analytic gradient is a routing, within the tolerance
    why: str = ""  # when not: a certificate (elements no routing gives what yours give)
    unsettled: int = 0  # tied elements in pieces too large for the flow (LIMIT): not decided


def routed(engine, name: str) -> bool:
    """Whether the ties of ``name`` are held to routings of declared windows of maxima, each
    of which meets every link between a tie's members (numeric/links.py): their links would
    cost copies for nothing."""
    return maxima_of(engine, name) is not None


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
          at: np.ndarray, near: np.ndarray | None = None) -> Routed | None:  # fmt: skip
    """The values compared at the coordinates of ``at`` (flat indices at a kink itself) that
    are tied maxima of some output: a valid gradient within atol + rtol |a| of the analytic
    one ``a`` where there is one, else the valid one a maximum flow finds nearest. None: no
    declared windows, or no tie among them. ``near`` (per coordinate of ``at``): a near-tie's
    step: an element within it below a window's maximum, or any within it below a maximum
    that has one, counts as tied there (its kinks lie within it: numeric/kinks.gapped; the
    routings to the window's strict maximum among them)."""
    M = maxima_of(engine, name)
    if M is None:
        return None
    x, g = engine.t64[name].ravel(), engine.g.ravel()
    top = _tops(M, x)
    radius = np.zeros(x.size + 1)  # [-1]: padding's, never tied
    if near is not None:
        radius[np.asarray(at, dtype=np.int64)] = near
    v = np.where(M >= 0, x[M], -np.inf)
    # a near-tie's element within its step below the maximum, or the maximum's within its own
    reach = np.maximum(radius[M], np.where(v == top[:, None], radius[M], 0).max(axis=1)[:, None])
    tied = (M >= 0) & ((v == top[:, None]) | (top[:, None] - v <= reach))
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
    rows, cols = np.nonzero(tied[used])
    ties = Ties(used[rows], np.searchsorted(elements, M[used[rows], cols]), g / scale,
                elements.size)  # fmt: skip
    start = ties.canonical(claim, slack)
    net, valid, unsettled, misses = ties.adjust(start, claim, slack)
    why = "" if valid else ties.explain(misses, net, engine, name, elements, a, fixed, scale)
    values = fixed[elements] + net * scale
    keep = np.isin(elements, at) & ~unsettled
    return Routed(elements[keep], values[keep], int(used.size), valid, why,
                  int(unsettled.sum()))  # fmt: skip


@mutable_record
class Ties:
    """The tied pairs: window ``w[p]`` (upstream ``g[w[p]]``) may route to element ``e[p]``
    (a position among the tied elements, ``n`` of them). A routing is a share per pair,
    positive windows' shares >= 0, negative windows' <= 0, each window's adding up to its g."""

    w: np.ndarray
    e: np.ndarray
    g: np.ndarray
    n: int

    def nets(self, share: np.ndarray) -> np.ndarray:
        return np.bincount(self.e, share, minlength=self.n)

    def canonical(self, claim: np.ndarray, slack: np.ndarray) -> np.ndarray:
        """Of the routings to each window's first tied maximum (torch's), its last, or evenly
        to all, the one whose nets are nearest the claims: the flow starts from it."""
        first = np.r_[True, self.w[1:] != self.w[:-1]]
        last = np.r_[self.w[1:] != self.w[:-1], True]
        count = np.bincount(self.w)[self.w]
        best, miss = None, math.inf
        for pick in (first * 1.0, last * 1.0, 1.0 / count):
            share = pick * self.g[self.w]
            off = np.abs(self.nets(share) - claim) - slack
            total = float(np.maximum(off, 0).sum())
            if total < miss:
                best, miss = share, total
        return best

    def adjust(self, share: np.ndarray, claim: np.ndarray, slack: np.ndarray):
        """(nets, valid, open, misses): the routing ``share`` moved, as far as the windows
        allow, toward nets within ``slack`` of ``claim``, piece by connected piece (elements
        sharing windows, transitively), only the pieces holding an element off its claim.
        Moving value from element e to e' inside a window: a positive window gives e' more and
        e less (at most what e has of it); a negative one draws more from e and less from e'
        (at most what it draws from e'). ``open``: per element, whether its piece was left
        undecided (beyond LIMIT); ``misses``: per piece no routing fits, its certificate."""
        n0 = self.nets(share)
        off = n0 - claim  # what each element must shed (< 0: receive)
        bad = np.abs(off) > slack
        nets, misses = n0.copy(), []
        unsettled = np.zeros(self.n, dtype=bool)
        if not bad.any():
            return nets, True, unsettled, misses
        label = _pieces_of(self)
        of_pair = label[self.e]
        spent = 0  # pairs in the pieces solved by a flow so far
        pieces = np.unique(label[bad])
        for piece in pieces[np.argsort(np.bincount(of_pair)[pieces], kind="stable")]:
            elems = np.flatnonzero(label == piece)
            pairs = np.flatnonzero(of_pair == piece)
            # moves keep each window's total: the piece's sum is fixed, whatever the routing
            total = float(n0[elems].sum())
            if abs(total - float(claim[elems].sum())) > float(slack[elems].sum()):
                misses.append(("sum", elems, total))
                continue
            if spent + pairs.size > LIMIT:
                unsettled[elems] = True
                continue
            spent += pairs.size
            moved, cut = self._piece(share, pairs, elems, off, slack)
            nets[elems] = moved[elems]
            if cut is not None:
                misses.append(("cut", elems, cut))
        return nets, not misses, unsettled, misses

    def _piece(self, share, pairs, elems, off, slack):
        """One piece's moved nets, and None or the minimum cut's network when none fits."""
        wins = np.unique(self.w[pairs])
        nw = wins.size
        node_w = {int(v): 2 + k for k, v in enumerate(wins)}
        node_e = {int(v): 2 + nw + k for k, v in enumerate(elems)}
        S, T = 0, 1
        moves = []  # (edge in the list, pair, +1: the pair's share grows, -1: shrinks)
        edges = []
        for p in pairs:
            o, e = node_w[int(self.w[p])], node_e[int(self.e[p])]
            have = abs(share[p])
            # a positive window: into e gives more, out of e gives less; a negative one: out
            # of e draws more, into e draws less
            grow, shrink = ((o, e), (e, o)) if self.g[self.w[p]] > 0 else ((e, o), (o, e))
            edges.append((*grow, 0.0, math.inf))
            moves.append((len(edges) - 1, p, 1))
            if have > 0:
                edges.append((*shrink, 0.0, have))
                moves.append((len(edges) - 1, p, -1))
        ends = []  # the element's own edges: shed (from S), receive (to T)
        for e in elems:
            v, lo, hi = node_e[int(e)], off[e] - slack[e], off[e] + slack[e]
            if hi > 0:
                edges.append((S, v, max(lo, 0.0), hi))
                ends.append(max(off[e], 0.0))
            if lo < 0:
                edges.append((v, T, max(-hi, 0.0), -lo))
                ends.append(max(-off[e], 0.0))
        flows = feasible(2 + nw + elems.size, [*edges, (T, S, 0.0, math.inf)], tiny=1e-12)
        if flows is not None:
            return self._moved(share, moves, flows), None
        # none fits: the routing moved as far as it goes toward the claims exactly
        net = Network(2 + nw + elems.size)
        inner = len(edges) - len(ends)
        ids = [net.add(u, v, hi if k < inner else ends[k - inner])
               for k, (u, v, _, hi) in enumerate(edges)]  # fmt: skip
        net.maxflow(S, T, tiny=1e-12)
        return self._moved(share, moves, [net.flow(i) for i in ids]), (net, node_e)

    def _moved(self, share, moves, flows) -> np.ndarray:
        share = share.copy()
        for i, p, sign in moves:
            share[p] += sign * np.sign(self.g[self.w[p]]) * flows[i]
        return self.nets(share)

    def explain(self, misses, nets, engine, name, elements, a, fixed, scale) -> str:
        """The certificate of the piece that misses most: a piece's total is fixed by its
        windows (each routes all of its gradient inside it); or, from a minimum cut, no move
        inside a window leaves its source side (enters its sink side), so every routing gives
        those elements at least (at most) what the moved routing ``nets`` gives them."""
        bound_at = fixed[elements] + nets * scale
        found = []
        for kind, elems, extra in misses:
            if kind == "sum":
                sets = [(elems, "exactly", extra * scale + fixed[elements[elems]].sum())]
            else:
                net, node_e = extra
                sets = []
                for source in (True, False):
                    side = net.reachable(0, 1e-12) if source else _reaching(net, 1, 1e-12)
                    inside = np.array([e for e in elems if side[node_e[int(e)]]], np.int64)
                    if inside.size:
                        sets.append((inside, "at least" if source else "at most",
                                     bound_at[inside].sum()))  # fmt: skip
            for members, word, bound in sets:
                miss = abs(float(a[elements[members]].sum() - bound))
                found.append((members, word, float(bound), miss))
        if not found:
            return ""
        # any set missing its bound is a certificate: the smallest that misses by half the most
        most = max(f[3] for f in found)
        members, how, bound, _ = min((f for f in found if f[3] >= most / 2),
                                     key=lambda f: f[0].size)  # fmt: skip
        held = float(a[elements[members]].sum())
        ws = np.unique(self.w[np.isin(self.e, members)])
        zs = _names(engine.layer.output.name,
                    [np.unravel_index(int(w), engine.out_shape) for w in ws])  # fmt: skip
        xs = _names(name, [np.unravel_index(int(elements[k]), engine.t64[name].shape)
                           for k in members])  # fmt: skip
        return (f"every routing gives {xs} {how} {bound:.4g} in all (the windows tied there: "
                f"{zs}), yours give {held:.4g}")


def _pieces_of(t: Ties) -> np.ndarray:
    """A label per element: elements sharing a window, transitively, share one."""
    return groups(t.n, t.e, t.w)


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
