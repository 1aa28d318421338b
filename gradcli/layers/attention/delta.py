"""Attention's incremental evaluation, for the numerical engine (``Layer.perturbed``).

The scalar L = sum(g * out) at P copies of the cached point, copy p with one coordinate moved,
recomputing only what that coordinate moves. Nothing here differentiates anything: it is the
forward, evaluated at the moved point, with the unmoved parts taken from the cache.

- L is linear in out, so per head L = sum_r (sum_c E[r, c] w[r, c]) / (sum_c E[r, c]) with
  E = exp(S - rowmax) (the forward's unnormalized softmax) and w = (g W_O^T) V^T: the sums
  of the forward reassociated.
- X[b, t, e] moves row t of Q, K and V only, hence row t and column t of every head's S: row t
  is recomputed whole; every other row r gets one new score S[r, t] and keeps the exponentials
  of the rest, bit for bit (same score, same shift).
- W_Q[e, k] (W_K[e, k]) moves column k of Q (K) only: one head's S moves by a rank-one term
  and is exponentiated afresh; the other heads keep their terms.
- W_V[e, v] moves column v of V, hence column v of H = A V only.

The engine checks these against ``forward`` at run time before using them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from gradcli.records import mutable_record

_BLOCK = 2**21  # bytes of the largest temporary per chunk of probes: stays in cache


@mutable_record
class _Point:
    """The cached point, batch axes flattened: B examples, h heads, T positions."""

    X: np.ndarray  # (B, T, d)
    Q: np.ndarray  # (B, h, T, ck)
    K: np.ndarray  # (B, h, T, ck)
    V: np.ndarray  # (B, h, T, cv)
    S: np.ndarray  # (B, h, T, T), -inf where masked
    GH: np.ndarray  # (B, h, T, cv): g W_O^T per head
    E: np.ndarray  # (B, h, T, T)
    Sm: np.ndarray  # (B, h, T, T): S - shift, -inf where masked
    low: float  # the lowest unmasked entry of Sm
    shift: np.ndarray  # (B, h, T): each row's max score
    w: np.ndarray  # (B, h, T, T): w[r, c] = GH[r] . V[c]
    sums: np.ndarray  # (B, h, T)
    nums: np.ndarray  # (B, h, T)
    keep: np.ndarray | None  # (T, T) causal mask
    scale: float
    cache: Mapping[str, Any]

    @property
    def rows(self) -> np.ndarray:
        """(B, h): each example's and head's share of L."""
        return (self.nums / self.sums).sum(axis=-1)


def exp_shifted(Z: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """exp of shifted scores Z (..., T, T), in place where it can be: the softmax's numerators
    (attention.softmax) and this module's. ``keep`` (T, T) zeroes masked entries exactly."""
    if not np.iscomplexobj(Z):
        # exp of anything below -700 is < 1e-304 next to the row's 1; flooring it there keeps
        # np.exp off its slow subnormal path (3x on long rows) without changing any sum
        np.maximum(Z, -700.0, out=Z)
    elif keep is not None:
        Z = np.where(keep, Z, 0)  # exp(-inf + nan j) would be nan
    np.exp(Z, out=Z)
    if keep is not None:
        Z *= keep
    return Z


_last: list[Any] = []  # [cache, g, its _Point]: the engine asks at one point many times


def _point(cache: Mapping[str, Any], g: np.ndarray) -> _Point:
    """The cached point for (cache, g), built once: its T x T arrays cost as much as a forward
    (a check asked for it a dozen times, 4 of 8 s at T = 2000)."""
    if _last and _last[0] is cache and _last[1] is g:
        return _last[2]
    _last[:] = [cache, g, _build(cache, g)]
    return _last[2]


def _build(cache: Mapping[str, Any], g: np.ndarray) -> _Point:
    X, h, S = cache["X"], cache["heads"], cache["S"]
    T, d = X.shape[-2:]
    B = int(np.prod(X.shape[:-2], dtype=np.int64))
    X = X.reshape(B, T, d)
    Q, K, V = (cache[n].reshape(B, h, T, -1) for n in ("Q", "K", "V"))
    S = S.reshape(B, h, T, T)
    G = g.reshape(B, T, -1)
    if cache["W_O"] is not None:
        G = G @ cache["W_O"].T
    GH = G.reshape(B, T, h, -1).swapaxes(1, 2)
    keep = cache["keep"]
    shift = S.max(axis=-1)
    Sm = S - shift[..., None]
    low = float(np.where(np.isneginf(Sm), 0.0, Sm).min(initial=0.0))
    E = exp_shifted(Sm.copy(), keep)
    w = GH @ V.swapaxes(-1, -2)
    sums, nums = E.sum(axis=-1), (E * w).sum(axis=-1)
    return _Point(X, Q, K, V, S, GH, E, Sm, low, shift, w, sums, nums, keep, cache["scale"], cache)


def _chunks(n: int, per_probe: int) -> Iterator[slice]:
    step = max(1, _BLOCK // max(1, per_probe))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def perturbed(
    name: str, cache: Mapping[str, Any], g: np.ndarray, idx: np.ndarray, values: np.ndarray
) -> np.ndarray | None:
    """L (P,) for P copies, copy p with flat coordinate idx[p] of ``name`` set to values[p];
    None where coloring is cheaper (W_O, and W_V without W_O: each moves one output column)."""
    if name not in ("X", "W_Q", "W_K", "W_V") or (name == "W_V" and cache["W_O"] is None):
        return None
    if any(cache[n] is not None and cache[n].ndim != 2 for n in ("W_Q", "W_K", "W_V", "W_O")):
        return None  # weights with leading axes: the stacked forward handles those
    p = _point(cache, g)
    idx = np.asarray(idx, dtype=np.int64)
    dtype = np.result_type(values, np.float64)
    values = np.asarray(values, dtype=dtype)
    total = p.rows.sum()
    out = np.empty(len(idx), dtype=dtype)
    B, h, T = p.S.shape[:3]
    if name in ("W_Q", "W_K"):  # it chunks by head itself
        return _moved_qk(name, p, idx, values, total)
    run = _moved_x if name == "X" else _moved_v
    for part in _chunks(len(idx), 128 * B * T * h):
        out[part] = run(name, p, idx[part], values[part], total)
    return out


def _moved_x(name: str, p: _Point, idx: np.ndarray, values: np.ndarray, total: float):
    """L (n,) with X[b, t, e] = value for each (flat idx, value): grouped by example b, each
    head's share from _x_head, the other examples' shares unchanged."""
    B, h, T, ck = p.Q.shape
    d = p.X.shape[-1]
    b, t, e = np.unravel_index(idx, (B, T, d))
    n = len(idx)
    rows = p.X[b, t].astype(values.dtype)
    rows[np.arange(n), e] = values
    W = p.cache
    q, k, v = (
        (rows @ W[m]).reshape(n, h, -1) for m in ("W_Q", "W_K", "W_V")
    )  # the moved rows of Q, K, V: (n, h, c)
    out = np.empty(n, dtype=values.dtype)
    at = np.arange(n)
    for bb in np.unique(b):
        sel = np.flatnonzero(b == bb)
        ts = t[sel]
        acc = total - p.rows[bb].sum()
        for a in range(h):
            acc = acc + _x_head(p, bb, a, ts, q[sel, a], k[sel, a], v[sel, a], at[: len(sel)])
        out[sel] = acc
    return out


def _x_head(p: _Point, b: int, a: int, ts, q, k, v, at) -> np.ndarray:
    """Head a of example b with row ts[i] of Q, K, V replaced by q[i], k[i], v[i]: its L."""
    T = p.S.shape[-1]
    Qa, Ka, GHa = p.Q[b, a], p.K[b, a], p.GH[b, a]
    col = (Qa @ k.T).T * p.scale  # (n, T): the new S[r, t] for every row r
    row = (q @ Ka.T) * p.scale  # (n, T): the new S[t, c] for every column c
    diag = np.einsum("ic,ic->i", q, k) * p.scale
    col[at, ts] = diag
    row[at, ts] = diag
    wcol = (GHa @ v.T).T  # (n, T): GH[r] . v_new
    r_idx = np.arange(T)
    masked = None
    if p.keep is not None:
        masked = r_idx[None, :] < ts[:, None]  # S[r, t] is masked for r < t
        col = np.where(masked, -np.inf, col)
    # rows r != t: one new score; the shift moves only if it is the new row maximum
    shift0 = p.shift[b, a][None, :]
    shift = np.maximum(shift0, col.real)
    factor = np.exp(shift0 - shift)
    new = exp_shifted(col - shift, None if masked is None else ~masked)
    old = p.E[b, a][:, ts].T
    wold = p.w[b, a][:, ts].T
    sums = (p.sums[b, a][None, :] - old) * factor + new
    nums = (p.nums[b, a][None, :] - old * wold) * factor + new * wcol
    ratio = nums / sums
    # row t: every score new
    keep_row = None
    if p.keep is not None:
        keep_row = r_idx[None, :] <= ts[:, None]
        row = np.where(keep_row, row, -np.inf)
    E_row = exp_shifted(row - row.real.max(axis=-1, keepdims=True), keep_row)
    w_row = p.w[b, a][ts].astype(wcol.dtype)
    w_row[at, ts] = wcol[at, ts]
    ratio[at, ts] = (E_row * w_row).sum(axis=-1) / E_row.sum(axis=-1)
    return ratio.sum(axis=-1)


def _moved_qk(name: str, p: _Point, idx: np.ndarray, values: np.ndarray, total: float):
    """Copies of W_Q or W_K moved, grouped by the head each moved column feeds."""
    W = p.cache[name]
    ck = p.Q.shape[-1]
    head = np.unravel_index(idx, W.shape)[1] // ck
    out = np.empty(len(idx), dtype=values.dtype)
    B, h, T, _ = p.S.shape
    for a in np.unique(head):
        sel = np.flatnonzero(head == a)
        buf = None
        for part in _chunks(len(sel), 8 * B * T * T):
            pick = sel[part]
            n = len(pick)
            if buf is None or len(buf) < n or buf.dtype != values.dtype:
                buf = np.empty((n, B, T, T), dtype=values.dtype)
            out[pick] = _qk_head(name, p, int(a), idx[pick], values[pick], total, buf[:n])
    return out


def _qk_head(name, p: _Point, a: int, idx, values, total, Z) -> np.ndarray:
    """L (n,) with W_Q[e, k] (or W_K[e, k]) = value, every k in head a; Z (n, B, T, T) is
    scratch for the moved scores."""
    W = p.cache[name]
    B, h, T, ck = p.Q.shape
    e, k = np.unravel_index(idx, W.shape)
    kk = k % ck
    n = len(idx)
    cols = W[:, k].T.astype(values.dtype)  # (n, d): the moved columns
    cols[np.arange(n), e] = values
    X2 = p.X.reshape(B * T, -1)
    # the column's change, both sides computed alike so an unmoved column cancels exactly
    delta = (X2 @ cols.T - X2 @ W[:, k]).T.reshape(n, B, T) * p.scale
    other = (p.Q if name == "W_K" else p.K)[:, a, :, kk]  # (n, B, T): split fancy indices lead
    rows, cols_ = (delta, other) if name == "W_Q" else (other, delta)
    # S moves by rows[r] * cols_[c]; keeping the unmoved row maxima as the shift is exact (the
    # softmax ignores any shift) unless the move could overflow exp, which the bound rules out
    np.einsum("nbr,nbc->nbrc", rows, cols_, out=Z)
    Z += p.Sm[:, a]
    bound = float(np.abs(rows.real).max(initial=0.0) * np.abs(cols_.real).max(initial=0.0))
    if bound > 600.0:
        Z -= Z.real.max(axis=-1, keepdims=True)
    if bound > 600.0 or np.iscomplexobj(Z) or p.low - bound < -700.0:
        E = exp_shifted(Z, p.keep)  # the forward's floor and mask
    else:
        E = np.exp(Z, out=Z)  # no floor can bite; masked scores are -inf, exp gives 0
    sums = E @ np.ones(T)
    nums = np.einsum("nbrc,brc->nbr", E, p.w[:, a])
    return total - p.rows[:, a].sum() + (nums / sums).sum(axis=(1, 2))


def _moved_v(name: str, p: _Point, idx: np.ndarray, values: np.ndarray, total: float):
    """L (n,) with W_V[e, v] = value: column v of V (B, T) and so of H moves, in one head."""
    W = p.cache["W_V"]
    B, h, T, cv = p.V.shape
    e, v = np.unravel_index(idx, W.shape)
    a, vv = v // cv, v % cv
    cols = W[:, v].T.astype(values.dtype)
    cols[np.arange(len(idx)), e] = values
    X2 = p.X.reshape(B * T, -1)
    new = (X2 @ cols.T).reshape(B, T, -1)  # column v of V, moved, for each copy
    old = (X2 @ W[:, v]).reshape(B, T, -1)
    A = p.cache["A"].reshape(B, h, T, T)
    out = np.empty(len(idx), dtype=values.dtype)
    for head in np.unique(a):
        sel = np.flatnonzero(a == head)
        gh = p.GH[:, head][..., vv[sel]]  # (B, T, n)
        moved = (gh * (A[:, head] @ new[..., sel])).sum(axis=(0, 1))
        out[sel] = total + (moved - (gh * (A[:, head] @ old[..., sel])).sum(axis=(0, 1)))
    return out
