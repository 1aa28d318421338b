"""What rnn_step and lstm_step share: the affine pre-activation x Wx + h_prev Wh + b with
right-aligned leading axes, its backward, shape checks and footprints.

Both inputs (x and the previous state) carry batch axes; they broadcast together, so an initial
state given once (no batch axes) serves every example. Their gradients are summed back over the
axes they were broadcast along.
"""

from __future__ import annotations

import math

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers.base import AxisMap, Shapes, rows_matmul, same


def matmul(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x (..., D) @ W (..., D, n) with leading axes broadcast right-aligned (np.matmul would take
    x's last batch axis as matrix rows and misalign W's probe axes against it)."""
    if W.ndim == 2:
        return x @ W
    return rows_matmul(x, W.swapaxes(-1, -2))


# a = x Wx + h_prev Wh + b
def affine(x: np.ndarray, h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
           b: np.ndarray) -> np.ndarray:  # fmt: skip
    a = matmul(x, Wx) + matmul(h, Wh)
    return a + b


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g summed down to ``shape`` over the leading axes it was broadcast along."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and g.shape[k] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def rows(a: np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """a broadcast to the batch and flattened to (examples, features)."""
    return np.broadcast_to(a, batch + a.shape[-1:]).reshape(-1, a.shape[-1])


# dWx = x^T da   dWh = h_prev^T da   db = sum da   dx = da Wx^T   dh_prev = da Wh^T
def affine_backward(da: np.ndarray, x: np.ndarray, h: np.ndarray, Wx: np.ndarray,
                    Wh: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """The gradients of a = x Wx + h Wh + b from da (..., n), keyed x, h, Wx, Wh, b."""
    batch = da.shape[:-1]
    da2 = da.reshape(-1, da.shape[-1])
    return {
        "x": unbroadcast(da @ Wx.T, x.shape),
        "h": unbroadcast(da @ Wh.T, h.shape),
        "Wx": rows(x, batch).T @ da2,
        "Wh": rows(h, batch).T @ da2,
        "b": np.ones(len(da2), dtype=da2.dtype) @ da2,
    }


def check_shapes(layer: str, s: Shapes, x: str, h: str, gates: int) -> tuple[int, ...]:
    """Validates x (..., D), h (..., H), Wx (D, gates*H), Wh (H, gates*H), b (gates*H,) and
    returns the broadcast batch shape."""
    xs, hs, Wx, Wh, b = s[x], s[h], s["Wx"], s["Wh"], s["b"]
    n = "4H" if gates == 4 else "H"
    for key, shape in ((x, xs), (h, hs)):
        if len(shape) < 1:
            raise ShapeError(f"{layer}: {key} must have at least 1 axis, got a scalar", key=key)
    H = hs[-1]
    if len(Wh) != 2 or tuple(Wh) != (H, gates * H):
        raise ShapeError(
            f"{layer}: Wh must have shape [{H}, {gates * H}] (H, {n}) for {h} with H={H} "
            f"(last axis), got {list(Wh)}",
            key="Wh",
        )
    if len(Wx) != 2 or tuple(Wx) != (xs[-1], gates * H):
        raise ShapeError(
            f"{layer}: Wx must have shape [{xs[-1]}, {gates * H}] (D, {n}) for {x} with "
            f"D={xs[-1]} and H={H}, got {list(Wx)}",
            key="Wx",
        )
    if tuple(b) != (gates * H,):
        raise ShapeError(f"{layer}: b must have shape [{gates * H}] ({n},), got {list(b)}", key="b")
    try:
        return np.broadcast_shapes(xs[:-1], hs[:-1])
    except ValueError:
        raise ShapeError(
            f"{layer}: the batch axes of {x} {list(xs[:-1])} and {h} {list(hs[:-1])} do not "
            "broadcast together",
            key=h,
        ) from None


def input_maps(own: tuple[int, ...], batch: tuple[int, ...]) -> tuple[AxisMap, ...]:
    """An input's batch axes against the output's (right-aligned): an axis it shares moves
    its own example only; an axis of size 1 broadcast over the batch moves every example."""
    off = len(batch) - len(own)
    return tuple(
        same(off + k, n) if n == batch[off + k] else None for k, n in enumerate(own)
    )


def working(batch: tuple[int, ...], width: int) -> int:
    """The pre-activations and their gradient, (batch, width) each."""
    return 2 * math.prod(batch) * width
