"""Linear (fully connected) layer, seed notation.

Shapes: x (..., in), W (out, in), b (out,), z (..., out); ``...`` are batch axes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    batch_maps,
    rows_matmul,
    same,
)
from gradcli.layers.cs231n import ROWS, Form, T, out
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s


# z = W x + b
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., in), W (out, in), b (out,) -> z (..., out)."""
    x, W, b = t["x"], t["W"], t["b"]
    z = x @ W.T if W.ndim == 2 else rows_matmul(x, W)  # leading axes on W: stacked probes
    if np.can_cast(b.dtype, z.dtype, "same_kind") and z.shape[-b.ndim :] == b.shape:
        z += b  # in place: a second output-sized temporary costs a page-faulting pass
    else:
        z = z + b  # b carries probe axes, or is complex where z is not
    return z, {"x": x, "W": W, "b": b, "z": z}  # z: the incremental path's point


# dL/dW = dL/dz x^T     dL/db = dL/dz     dL/dx = W^T dL/dz   (summed over batch axes)
def backward(dz: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dz (..., out) -> {"x": (..., in), "W": (out, in), "b": (out,)}."""
    x, W = cache["x"], cache["W"]
    dz2 = dz.reshape(-1, dz.shape[-1])
    return {
        "x": dz @ W,
        # (x^T dz)^T, not dz^T x: OpenBLAS runs this orientation 5-30% faster at these shapes
        "W": (x.reshape(-1, x.shape[-1]).T @ dz2).T,
        "b": np.ones(len(dz2), dtype=dz2.dtype) @ dz2,  # a GEMV: 5x faster than sum(axis=0)
    }


# the incremental path: L = sum g * z is bilinear in (x, W), so moving one coordinate by d
# moves L by d times a short sum over what it touches (every other output cancels exactly)
def perturbed(name: str, cache: dict, g: np.ndarray, idx: np.ndarray, values: Any) -> Any:
    """The loss sum(g * z) at copies of the cached point, copy p with flat coordinate idx[p] of
    ``name`` set to values[p] (Layer.perturbed): W[o, i] moves z[:, o] by d x[:, i], x[n, i]
    moves z[n, :] by d W[:, i], b[o] moves z[:, o] by d: O(batch) or O(out) per copy instead of
    a product over every row and column (a coloring of W takes `in` full products)."""
    x, W = cache["x"], cache["W"]
    if W.ndim != 2 or name not in ("x", "W", "b"):
        return None
    x2 = x.reshape(-1, W.shape[1])
    g2 = np.asarray(g).reshape(-1, W.shape[0])
    base = float(np.sum(g2 * cache["z"].reshape(g2.shape)))
    idx = np.asarray(idx, dtype=np.int64)
    if name == "b":
        d = np.asarray(values) - cache["b"][idx]
        return base + d * g2.sum(axis=0)[idx]
    row, i = np.divmod(idx, W.shape[1])
    d = np.asarray(values) - (W if name == "W" else x2)[row, i]
    # W[o, i]: the sum over the examples of g[:, o] x[:, i]; x[n, i]: over the outputs of
    # g[n, :] W[:, i]. The engine passes runs of consecutive coordinates: one product per row
    # o (or n) over a slice of columns, no gather
    A, B = (g2.T, x2.T) if name == "W" else (g2, W.T)
    moved = np.empty(len(idx))
    # runs: consecutive columns of one row
    starts = np.flatnonzero((np.diff(row) != 0) | (np.diff(i) != 1)) + 1
    if len(starts) >= _RUNS:  # scattered coordinates (a sample, kinks): gathered one by one
        for lo in range(0, len(idx), _RUNS):
            r, c = row[lo : lo + _RUNS], i[lo : lo + _RUNS]
            moved[lo : lo + _RUNS] = np.einsum("pk,pk->p", A[r], B[c])
        return base + d * moved
    for lo, hi in zip([0, *starts.tolist()], [*starts.tolist(), len(idx)], strict=True):
        moved[lo:hi] = B[i[lo] : i[lo] + hi - lo] @ A[row[lo]]
    return base + d * moved


_RUNS = 64  # rows of consecutive coordinates per call, beyond which they are gathered


def perturbed_elements(name: str, s: Shapes, options: Any = None) -> int:
    """What one incremental evaluation costs, in elements: a row of g and a column of x (W,
    b) or of W (x), its share of the base loss over a call's 2048 coordinates, and the engine's
    bookkeeping per coordinate (about 0.6 us here, as 512 elements)."""
    rows, out = math.prod(s["x"][:-1]), s["W"][0]
    return 2 * (rows if name != "x" else out) + rows * out // 2048 + 512


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x, W, b = s["x"], s["W"], s["b"]
    if len(W) != 2:
        raise ShapeError(f"linear: W must be 2-D (out, in), got shape {list(W)}", key="W")
    if len(x) < 1:
        raise ShapeError("linear: x must have at least 1 axis (..., in), got a scalar", key="x")
    if x[-1] != W[1]:
        raise ShapeError(
            f"linear: W has in={W[1]} (axis 1) but x has {x[-1]} features (last axis)", key="W"
        )
    if tuple(b) != (W[0],):
        raise ShapeError(f"linear: b must have shape [{W[0]}] (out,), got {list(b)}", key="b")
    return (*x[:-1], W[0])


def working_elements(s: Shapes, options: Any = None) -> int:
    """Beyond the tensors, output and gradients: one output-sized sum (z + b) and dW's
    transposed product."""
    return math.prod(s["x"][:-1]) * s["W"][0] + math.prod(s["W"])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., i] moves z[..., :] of its own example; W[o, i] and b[o] move z[..., o]."""
    batch, out = s["x"][:-1], s["W"][0]
    return {
        "x": (*batch_maps(batch), None),
        "W": (same(len(batch), out), None),
        "b": (same(len(batch), out),),
    }[name]


def explain(v: Shown) -> Formulas:
    sh, over = v.shapes, "Σ_batch " if v.batch else ""
    fwd = [
        "z = W · x + b",
        f"z {_s(v.out_shape)} = W {_s(sh['W'])} · x {_s(sh['x'])} + b {_s(sh['b'])}",
    ]
    if over:  # a batch is stored as rows, so the matrix product runs the other way round
        fwd.append("for a batch of rows x: z = x · Wᵀ + b, one row per example")
    return Formulas(fwd, {
        "W": ([f"∂L/∂W {_s(sh['W'])} = {over}∂L/∂z · xᵀ"],
              "dW is the outer product of the upstream gradient and the input"),
        "b": ([f"∂L/∂b {_s(sh['b'])} = {over}∂L/∂z"],
              "the bias adds straight into z, so its gradient is the upstream gradient itself"),
        "x": ([f"∂L/∂x {_s(sh['x'])} = Wᵀ · ∂L/∂z"],
              "the upstream gradient flows back through the transposed weights"),
    }, ("out",))  # fmt: skip


SKELETON = """
def forward(x, W, b):
    # z = W x + b                       x (in,), W (out, in), b (out,) -> z (out,)
    raise NotImplementedError


def backward(grad_output, x, W, b):
    # dL/dW = dL/dz . x^T    dL/db = dL/dz    dL/dx = W^T . dL/dz
    dz = grad_output
    raise NotImplementedError
    return {"x": ..., "W": ..., "b": ...}
"""


LAYER = Layer(
    name="linear",
    summary="z = W x + b",
    tensors=(
        TensorInfo("x", ("in",), ("i",), "input", "input vector"),
        TensorInfo("W", ("out", "in"), ("o", "i"), "weight", "weight matrix"),
        TensorInfo("b", ("out",), ("o",), "bias", "bias", optional=True),
    ),
    output=TensorInfo("z", ("out",), ("o",), "output", "pre-activation output"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (4,), "W": (3, 4), "b": (3,)},
    footprint=footprint,
    perturbed=perturbed,
    perturbed_elements=perturbed_elements,
    working=working_elements,
    explain=explain,
    skeleton=SKELETON,
    cs231n=(
        Form("affine_forward", "affine_backward", {"x": ROWS, "W": T.called("(D, M)")}, out(ROWS),
             layout="x as (N, D) rows, w = Wᵀ (D, M)"),
    ),  # fmt: skip
)
