"""Losses: a scalar output, the end of a chain, so the upstream gradient is dL/dL = 1.

Each averages over the batch, which mixes the examples: the batch axis N is a core axis here,
never independent copies (x is (N, C), pred (N, D)). Axes in front of N are independent
batches, one loss each, as leading axes are for every layer (the engine's probe axis is one).
Labels (role index: integers, never differentiated) and mse's target (role target: floats,
never differentiated) get no gradient.

Each loss is the sum of its terms (``Terms``: one per row, mse's one per element), and its
forward is written as that sum, so the numerical engine can difference the terms a coordinate
moves instead of the one loss every coordinate moves: coloring then works across rows.

- mse:                   loss = mean_{n,d} (pred - target)^2        (torch's MSELoss, mean)
- softmax_cross_entropy: loss = -mean_n log softmax(x_n)[y_n]       (CS231n's softmax_loss)
- svm:                   loss = mean_n sum_{c != y_n} max(0, x_nc - x_n,y_n + 1)
                                                                    (CS231n's svm_loss)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    Terms,
    as_indices,
    same,
)
from gradcli.layers.cs231n import Form
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s

LOSS = TensorInfo("loss", (), (), "output", "the loss, a scalar (its upstream gradient is 1)")


def _matrix(layer: str, s: Shapes, key: str, axes: str, rows: str) -> tuple[int, int]:
    """N and the row length of ``key`` (..., N, K), whose ``rows`` are what a message names."""
    if len(s[key]) < 2:
        raise ShapeError(
            f"{layer}: {key} must be (..., {axes}), {rows}, at least 2-D: the mean over the "
            f"batch mixes the examples, so N is a core axis, got shape {list(s[key])}",
            key=key,
        )
    return s[key][-2], s[key][-1]


def _lead(
    layer: str, s: Shapes, a: str, b: str, core: int, want: str, a_shape: Any = None
) -> tuple[int, ...]:
    """The broadcast leading axes (independent batches) of tensors a and b. b (the labels, the
    target) adds no axis a lacks: y [[0, 2]] for two rows of x is a slip for [0, 2], and taken
    as a batch of one it would make the scalar loss a batch of losses. An axis of 1 that a has
    broadcasts as numpy's do (one x, several label sets)."""
    lead_a, lead_b = s[a][:-core] if core else s[a], s[b][: len(s[b]) - core]
    if len(lead_b) > len(lead_a):
        raise ShapeError(
            f"{layer}: {b} must have shape {want}, got {list(s[b])}: its axes in front of N, "
            f"{list(lead_b)}, would be batches that {a} {list(a_shape or s[a])} does not have",
            key=b,
        )
    try:
        return np.broadcast_shapes(lead_a, lead_b)
    except ValueError:
        raise ShapeError(
            f"{layer}: the axes in front of N of {a} {list(lead_a)} and {b} {list(lead_b)} "
            "do not broadcast together",
            key=b,
        ) from None


def _labels_shape(layer: str, s: Shapes, N: int) -> tuple[int, ...]:
    x, y = list(s["x"]), list(s["y"])
    # what fits: x's rows with all, or some, of their batch axes (the others broadcast); with
    # batches of scores, [N] alone would name the wrong shape
    fits = [x[i:-1] for i in range(len(x) - 1)]
    want = f"{fits[0]} (N,)" if len(fits) == 1 else f"{' or '.join(map(str, fits))} (..., N)"
    if tuple(y[-1:]) != (N,):
        raise ShapeError(
            f"{layer}: y must have shape {want}, one integer label per row of the scores x {x} "
            f"(..., N, C), got {y}",
            key="y",
        )
    x_rows = {"x": s["x"][:-1], "y": s["y"]}
    return _lead(layer, x_rows, "x", "y", 1, want, a_shape=s["x"])


def check_labels(t: Arrays, options: Any = None) -> None:
    """Every label a class: 0 <= y_n < C."""
    y, C = np.asarray(t["y"]), t["x"].shape[-1]
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        raise ShapeError("labels must be whole numbers (class indices)", key="y")
    bad = np.argwhere((y < 0) | (y >= C))
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise ShapeError(
            f"label y{list(at)} = {int(y[at])} is not a class of x (expected 0 ... {C - 1})",
            key="y",
        )


def _pick(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """a[..., n, y_n] (..., N), the leading axes of a and y broadcast together."""
    lead = np.broadcast_shapes(a.shape[:-1], y.shape)
    a = np.broadcast_to(a, lead + a.shape[-1:])
    return np.take_along_axis(a, np.broadcast_to(y, lead)[..., None], axis=-1)[..., 0]


def _onehot(y: np.ndarray, C: int, dtype: Any) -> np.ndarray:
    return (y[..., None] == np.arange(C)).astype(dtype)


def _per_batch(dloss: np.ndarray) -> np.ndarray:
    """dloss (...) against (..., N, C)."""
    return np.asarray(dloss)[..., None, None]


def _rows_footprint(per_element: bool) -> Any:
    """The footprint of a loss's input (x, or mse's pred: (..., N, K)) on its terms: row n
    (with per_element, element n, k) moves only its own term. Its leading axes are dense (they
    may broadcast against the labels' or the target's)."""

    def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
        N, K = s[name][-2:]
        n = len(_lead_shape(s))  # the terms' leading axes come first
        return (*([None] * (len(s[name]) - 2)), same(n, N), same(n + 1, K) if per_element else None)

    return footprint


def _lead_shape(s: Shapes) -> tuple[int, ...]:
    """The leading axes of a loss's terms (and its output): its two tensors', broadcast."""
    if "pred" in s:
        return np.broadcast_shapes(s["pred"][:-2], s["target"][:-2])
    return np.broadcast_shapes(s["x"][:-2], s["y"][:-1])


# ----------------------------------------------------------------------------- mse
# loss = (1 / (N D)) sum_{n,d} (pred[n,d] - target[n,d])^2
def mse_terms(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """pred (..., N, D), target (..., N, D) -> terms (..., N, D), one per element; the loss
    (...) is their total (MSE_TERMS.summed)."""
    diff = t["pred"] - t["target"]  # diff*diff, not abs: complex-safe
    return diff * diff / (diff.shape[-2] * diff.shape[-1]), {"diff": diff, "shape": t["pred"].shape}


# dL/dpred = dloss * 2 (pred - target) / (N D)    (target: no gradient, it is not a parameter)
def mse_backward(dloss: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dloss (...) -> {"pred": (..., N, D)}."""
    diff = cache["diff"]
    grad = _per_batch(dloss) * (2.0 / (diff.shape[-2] * diff.shape[-1])) * diff
    return {"pred": _to_shape(grad, cache["shape"])}


def _to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g summed over the leading axes it was broadcast along (a target with more batches)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and g.shape[k] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def mse_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    N, D = _matrix("mse", s, "pred", "N, D", "N rows of D predictions")
    if tuple(s["target"][-2:]) != (N, D):
        raise ShapeError(
            f"mse: target must have pred's shape [..., {N}, {D}], got {list(s['target'])}",
            key="target",
        )
    return _lead("mse", s, "pred", "target", 2, f"{list(s['pred'])}, pred's")


MSE_TERMS = Terms(mse_terms, 2, _rows_footprint(per_element=True))


def mse_explain(v: Shown) -> Formulas:
    N, D = v.shapes["pred"][-2:]
    return Formulas(
        ["loss = (1 / (N·D)) Σ_{n,d} (pred[n,d] - target[n,d])²",
         f"N·D = {N}·{D} = {N * D} elements; target is data, not differentiated"],
        {"pred": ([f"∂L/∂pred {_s(v.shapes['pred'])} = ∂L/∂loss · 2 (pred - target) / (N·D)"],
                  "the residual, scaled by 2 and the number of elements the mean divides by")},
    )  # fmt: skip


MSE_SKELETON = """
def forward(pred, target):
    # loss = mean((pred - target)**2) over all N*D elements      pred, target (N, D) -> ()
    raise NotImplementedError


def backward(grad_output, pred, target):
    # dL/dpred = grad_output * 2 * (pred - target) / (N * D)     (target: no gradient)
    raise NotImplementedError
    return {"pred": ...}
"""

MSE = Layer(
    name="mse",
    means=("n", "d"),
    summary="loss = mean((pred - target)^2)",
    tensors=(
        TensorInfo("pred", ("N", "D"), ("n", "d"), "input", "predictions"),
        TensorInfo("target", ("N", "D"), ("n", "d"), "target", "targets (data: no gradient)"),
    ),
    output=LOSS,
    forward=MSE_TERMS.summed,
    backward=mse_backward,
    output_shape=mse_shape,
    default_shapes={"pred": (4, 3), "target": (4, 3)},
    working=lambda s, o=None: 2 * int(np.prod(s["pred"])),
    terms=MSE_TERMS,
    explain=mse_explain,
    skeleton=MSE_SKELETON,
    cs231n=(Form("mse_loss", ndim={"pred": 2}, hint="pred (N, D)"),),
)


# ----------------------------------------------------------------------------- softmax
# p[n, c] = exp(x[n, c]) / sum_k exp(x[n, k])    loss = -(1 / N) sum_n log p[n, y_n]
def softmax_ce_terms(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., N, C), y (N,) integer labels -> terms (..., N), one per row; the loss (...)
    is their total (SOFTMAX_CE_TERMS.summed)."""
    x, y = t["x"], as_indices(t["y"])
    shifted = x - np.max(x.real, axis=-1, keepdims=True)  # max of the real part: complex-safe
    e = np.exp(shifted)
    total = e.sum(axis=-1, keepdims=True)
    logp_y = _pick(shifted, y) - np.log(total[..., 0])
    # p = e / total is the backward's: the numerical engine runs this once per perturbed copy
    return -logp_y / x.shape[-2], {"e": e, "total": total, "y": y, "shape": x.shape}


def softmax_ce_shown(cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """p = softmax(x) (..., N, C), the probabilities: what compute shows."""
    return {"p": cache["e"] / cache["total"]}


SOFTMAX_CE_TERMS = Terms(softmax_ce_terms, 1, _rows_footprint(per_element=False))


# dL/dx[n, c] = dloss * (p[n, c] - [c == y_n]) / N
def softmax_ce_backward(dloss: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dloss (...) -> {"x": (..., N, C)}."""
    p, y = cache["e"] / cache["total"], cache["y"]
    grad = _per_batch(dloss) * (p - _onehot(y, p.shape[-1], p.dtype)) / p.shape[-2]
    return {"x": _to_shape(grad, cache["shape"])}


def softmax_ce_variants(t: Arrays, options: Any, dloss: np.ndarray) -> dict[str, tuple]:
    """The classic slips, for the diagnosis: the one-hot labels left out of p - onehot(y), or
    subtracted through dx[:, y] (every row's labelled columns)."""
    cache = softmax_ce_terms(t)[1]
    p, y = cache["e"] / cache["total"], cache["y"]
    N, C = p.shape[-2:]
    out = {"softmax_cross_entropy:no-onehot": (
        "with dx = p / N where dx = (p - onehot(y)) / N belongs: the - onehot(y) left out "
        "(each row's true class takes p - 1, the others p)",
        {"x": _to_shape(_per_batch(dloss) * p / N, cache["shape"])})}
    if y.ndim == 1:
        # dx[:, y] -= 1: every row's every labelled column, once per column (numpy's fancy
        # assignment does not accumulate a repeated label)
        labelled = np.isin(np.arange(C), y).astype(np.float64)
        out["softmax_cross_entropy:column-index"] = (
            "with dx[:, y] -= 1 where dx[np.arange(N), y] -= 1 belongs: 1 taken from every "
            "row at every class some label names, not from each row's own label",
            {"x": _to_shape(_per_batch(dloss) * (p - labelled) / N, cache["shape"])})
    return out


def _classifier_shape(layer: str) -> Any:
    def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
        N, _ = _matrix(layer, s, "x", "N, C", "N rows of C class scores with integer labels y (N,)")
        return _labels_shape(layer, s, N)

    return output_shape


def softmax_ce_explain(v: Shown) -> Formulas:
    N, C = v.shapes["x"][-2:]
    return Formulas(
        ["p[n,c] = e^x[n,c] / Σ_k e^x[n,k]   (row softmax, shifted by the row max)",
         "loss = -(1/N) Σ_n log p[n, y_n]",
         f"N = {N} examples, C = {C} classes; y holds integer labels, not differentiated"],
        {"x": ([f"∂L/∂x {_s(v.shapes['x'])}: ∂L/∂x[n,c] = ∂L/∂loss · (p[n,c] - 1[c = y_n]) / N"],
               "the predicted probabilities minus the one-hot labels, averaged over the N rows")},
    )  # fmt: skip


SOFTMAX_CE_SKELETON = """
def forward(x, y):
    # p = softmax(x) row by row (subtract the row max first)     x (N, C), y (N,) ints -> ()
    # loss = -mean_n log p[n, y[n]]
    raise NotImplementedError


def backward(grad_output, x, y):
    # dL/dx = grad_output * (p - onehot(y)) / N                  (y: no gradient)
    raise NotImplementedError
    return {"x": ...}
"""

SOFTMAX_CROSS_ENTROPY = Layer(
    name="softmax_cross_entropy",
    shown=softmax_ce_shown,
    means=("n",),
    summary="loss = -mean_n log softmax(x_n)[y_n]",
    tensors=(
        TensorInfo("x", ("N", "C"), ("n", "c"), "input", "class scores"),
        TensorInfo("y", ("N",), ("n",), "index", "integer labels 0 ... C-1", classes="C"),
    ),
    output=LOSS,
    forward=SOFTMAX_CE_TERMS.summed,
    backward=softmax_ce_backward,
    output_shape=_classifier_shape("softmax_cross_entropy"),
    default_shapes={"x": (5, 4), "y": (5,)},
    working=lambda s, o=None: 3 * int(np.prod(s["x"])),
    check_values=check_labels,
    terms=SOFTMAX_CE_TERMS,
    explain=softmax_ce_explain,
    variants=softmax_ce_variants,
    skeleton=SOFTMAX_CE_SKELETON,
    cs231n=(Form("softmax_loss", ndim={"x": 2}, hint="x (N, C) scores, y (N,) integer labels"),),
)


# ----------------------------------------------------------------------------- svm
# margin[n, c] = max(0, x[n, c] - x[n, y_n] + 1) for c != y_n, 0 at c = y_n
# loss = (1 / N) sum_{n, c} margin[n, c]
def svm_terms(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., N, C), y (N,) integer labels -> terms (..., N), one per row; the loss (...)
    is their total (SVM_TERMS.summed)."""
    x, y = t["x"], as_indices(t["y"])
    # in place, and the active set left to the backward: the numerical engine runs this once
    # per perturbed copy
    # (x - x_y) + 1, CS231n's order: exact where the scores are equal, whatever their size
    # (x - (x_y - 1) rounded a margin of 1 to 0 at scores of 1e16: outside test t67a F1)
    m = (x - _pick(x, y)[..., None]) + 1.0
    m *= m.real > 0  # the hinge, its mask from the real part: complex-safe
    true = np.broadcast_to(y[..., None], m.shape[:-1] + (1,))
    np.put_along_axis(m, true, 0.0, axis=-1)  # the correct class adds no margin
    sums = m.sum(axis=-1)
    cache = {"margins": m, "sums": sums, "y": y, "dtype": x.dtype, "shape": x.shape}
    return sums / x.shape[-2], cache


def svm_moved(
    name: str, t: Arrays, cache: dict[str, Any], idx: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Row n's term with x[n, c] (flat idx) at ``values``, in svm_terms' arithmetic: a score
    of another class than y_n moves its own margin only (the row's other margins kept: their
    sum less the old one, plus the new one); the true class's moves every margin of its row
    (recomputed whole, N rows of C in all). O(N C) for every coordinate of x, where stacked
    copies take O(N C) each."""
    x, m = t["x"], cache["margins"]
    if name != "x" or m.shape != x.shape:  # x broadcast against more label batches: a
        return None  # coordinate moves a term in each
    N, C = x.shape[-2:]
    idx = np.asarray(idx, dtype=np.int64)
    row = idx // C
    label = row * C + np.broadcast_to(cache["y"], x.shape[:-1]).ravel()[row]  # x[n, y_n], flat
    x = x.ravel()
    new = (values - x[label]) + 1.0  # the forward's rounding: (x - x_y) + 1
    new = new * (new.real > 0)
    T = ((cache["sums"].ravel()[row] - m.ravel()[idx]) + new) / N
    true = np.flatnonzero(idx == label)
    if true.size:
        r = (x.reshape(-1, C)[row[true]] - values[true][:, None]) + 1.0
        r = r * (r.real > 0)
        r[np.arange(true.size), label[true] % C] = 0.0
        T[true] = r.sum(axis=-1) / N
    return row, T


def svm_shown(cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """margins (..., N, C), max(0, x_c - x_y + 1) off the labels, 0 at them: compute shows it."""
    return {"margins": cache["margins"]}


SVM_TERMS = Terms(svm_terms, 1, _rows_footprint(per_element=False), moved=svm_moved)


# active[n, c] = margin[n, c] > 0
# dL/dx[n, c] = dloss * active[n, c] / N             (c != y_n)
# dL/dx[n, y_n] = -dloss * sum_c active[n, c] / N
def svm_backward(dloss: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dloss (...) -> {"x": (..., N, C)}."""
    active, y = (cache["margins"].real > 0).astype(cache["dtype"]), cache["y"]
    dx = active - _onehot(y, active.shape[-1], active.dtype) * active.sum(axis=-1, keepdims=True)
    return {"x": _to_shape(_per_batch(dloss) * dx / active.shape[-2], cache["shape"])}


def svm_variants(t: Arrays, options: Any, dloss: np.ndarray) -> dict[str, tuple]:
    """The classic slips, for the diagnosis: the true class's term left out (each violated
    margin pushes its class up, and nothing pulls the correct class down), or the correct
    class counted among the violated margins."""
    cache = svm_terms(t)[1]
    active = (cache["margins"].real > 0).astype(np.float64)
    onehot = _onehot(cache["y"], active.shape[-1], np.float64)
    right = "dx[n, y_n] = -#{c : margin[n, c] > 0} / N belongs"
    return {
        "svm:true-class-left-out": (
            f"with dx[n, y_n] = 0 where {right}: the correct class's term left out (each "
            "violated margin pulls its row's correct class down)",
            {"x": _to_shape(_per_batch(dloss) * active / active.shape[-2], cache["shape"])}),
        # margins taken with the correct class's own, 1 > 0 at c = y_n, counted with them
        "svm:true-class-counted": (
            f"with the correct class counted among the violated margins (its own margin, "
            f"x[n, y_n] - x[n, y_n] + 1 = 1, not zeroed): dx[n, y_n] one 1/N lower where "
            f"{right}",
            {"x": _to_shape(_per_batch(dloss) * (active - onehot * (active.sum(-1, keepdims=True)
                                                                    + 1)) / active.shape[-2],
                            cache["shape"])}),
    }  # fmt: skip


def _crosses(m: np.ndarray, end: np.ndarray, step: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Whether a margin going from m to ``end`` as its score moves by ``step`` meets the
    hinge's corner at 0 (the forward's branch is m > 0, as relu's is x > 0), or sits on it
    (``at``: the margin at the point, for a zero step)."""
    return ((m < 0) & (end >= 0)) | ((m > 0) & (end <= 0)) | ((step == 0) & (at == 0))


def _zero_in_another_order(x: np.ndarray, y_at: np.ndarray, unit: float) -> np.ndarray:
    """Where x - x_y + 1, summed in any order in the dtype of epsilon ``unit`` (float32 or
    float64), is exactly 0."""
    dtype = np.float32 if unit >= float(np.finfo(np.float32).eps) else np.float64
    with np.errstate(all="ignore"):
        a, b, one = x.astype(dtype), np.broadcast_to(y_at, x.shape).astype(dtype), dtype(1)
        orders = ((a - b) + one, (a + one) - b, a - (b - one), (one - b) + a)
    return np.logical_or.reduce([o == 0 for o in orders])


def _meets(start: np.ndarray, step: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Whether a score moving from ``start`` to ``step`` (offsets from the point) comes within
    ``reach`` of it, or sits at it (a zero step)."""
    lo, hi = np.minimum(start, step), np.maximum(start, step)
    return ((lo <= reach) & (hi >= -reach) & (hi > lo)) | ((start == 0) & (step == 0))


def svm_kinks(name: str, t: Arrays, options: Any, step: np.ndarray,
              start: np.ndarray | None = None,
              unit: float | None = None) -> np.ndarray | None:  # fmt: skip
    """Where moving one score changes the hinge's active set: x[n, c] (c != y_n) moves its own
    margin by the step; x[n, y_n] moves every margin of row n by minus the step. The margins
    in svm_terms' own arithmetic, (x - x_y) + 1: what the forward rounds to 0 is the corner
    (x_y + 1e-17 beside x_y - 1 in float64, where x - (x_y - 1) is not 0)."""
    if name != "x":
        return None
    x, y = t["x"], as_indices(t["y"])
    lead = np.broadcast_shapes(x.shape[:-1], y.shape)
    x, y = np.broadcast_to(x, lead + x.shape[-1:]), np.broadcast_to(y, lead)
    step = np.broadcast_to(step, x.shape)
    start = np.zeros(x.shape) if start is None else np.broadcast_to(start, x.shape)
    true = np.arange(x.shape[-1]) == y[..., None]
    y_at = _pick(x, y)[..., None]
    m = (x - y_at) + 1.0
    own = _crosses(((x + start) - y_at) + 1.0, ((x + step) - y_at) + 1.0, step, m) & ~true
    s_true = _pick(step, y)[..., None]  # the true class's step, against every margin
    a_true = _pick(start, y)[..., None]
    begin, moved = (x - (y_at + a_true)) + 1.0, (x - (y_at + s_true)) + 1.0
    crossed = _crosses(begin, moved, s_true, m) & ~true
    # a margin not 0 that another order of the same sum, in the dtype the code under test
    # computes in, rounds to 0 is a near-tie whatever side ours is on: a mask taken from it
    # (CS231n's x - x_y + 1 > 0, or >= 0) is as right as ours, whose clean side failed it
    # (outside test t65b F1: -2.8e-17 in float64, 6e-8 in float32); one no order rounds to 0
    # is a margin (t66a F3: 1 float32 ulp at 10). Its corner is anywhere within the rounding
    # (2 units of its largest term): a segment meeting it crosses, and the slopes are read
    # beyond it (numeric/kinks.py)
    if unit is None:  # the epsilon the code under test computes in (numeric/engine.kink_map)
        unit = float(np.finfo(x.dtype if x.dtype.kind == "f" else np.float64).eps)
    near = (m != 0) & ~true & _zero_in_another_order(x, y_at, unit)
    if near.any():
        reach = 2 * unit * np.maximum(np.maximum(np.abs(x), np.abs(y_at)), 1.0)
        own |= near & _meets(start, step, reach)
        crossed |= near & _meets(a_true, s_true, reach)
    out = own | (true & crossed.any(axis=-1)[..., None])
    return _to_shape(out.astype(np.int64), t["x"].shape) > 0


def svm_explain(v: Shown) -> Formulas:
    N, C = v.shapes["x"][-2:]
    return Formulas(
        ["margin[n,c] = max(0, x[n,c] - x[n,y_n] + 1) for c ≠ y_n   (0 at c = y_n)",
         "loss = (1/N) Σ_{n,c} margin[n,c]",
         f"N = {N} examples, C = {C} classes; y holds integer labels, not differentiated"],
        {"x": ([f"∂L/∂x {_s(v.shapes['x'])}: ∂L/∂x[n,c] = ∂L/∂loss · 1[margin[n,c] > 0] / N "
                "(c ≠ y_n)",
                "∂L/∂x[n,y_n] = -∂L/∂loss · #{c : margin[n,c] > 0} / N"],
               "each violated margin pushes its class up and the correct class down")},
    )  # fmt: skip


SVM_SKELETON = """
def forward(x, y):
    # margins = max(0, x - x[n, y[n]] + 1), 0 at the correct class  x (N, C), y (N,) -> ()
    # loss = margins.sum() / N
    raise NotImplementedError


def backward(grad_output, x, y):
    # dL/dx[n, c] = grad_output * (margins[n, c] > 0) / N              (c != y[n])
    # dL/dx[n, y[n]] = -grad_output * (number of c with margins[n, c] > 0) / N
    raise NotImplementedError
    return {"x": ...}
"""

SVM = Layer(
    name="svm",
    shown=svm_shown,
    means=("n",),
    summary="loss = mean_n sum_{c != y_n} max(0, x_nc - x_ny_n + 1)",
    tensors=SOFTMAX_CROSS_ENTROPY.tensors,
    output=LOSS,
    forward=SVM_TERMS.summed,
    backward=svm_backward,
    output_shape=_classifier_shape("svm"),
    default_shapes={"x": (5, 4), "y": (5,)},
    working=lambda s, o=None: 3 * int(np.prod(s["x"])),
    check_values=check_labels,
    kinks=svm_kinks,
    kink_words="a margin x[n, c] - x[n, y_n] + 1 == 0, where the hinge's slope may be any value "
    "in [0, 1]",
    terms=SVM_TERMS,
    explain=svm_explain,
    variants=svm_variants,
    skeleton=SVM_SKELETON,
    cs231n=(Form("svm_loss", ndim={"x": 2}, hint="x (N, C) scores, y (N,) integer labels"),),
)
