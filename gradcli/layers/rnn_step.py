"""One step of a vanilla (Elman) RNN, CS231n's rnn_step_forward.

Shapes: x (..., D), prev_h (..., H), Wx (D, H), Wh (H, H), b (H,), next_h (..., H); ``...`` are
batch axes (x's and prev_h's broadcast together: one initial state can serve every example).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.layers import _recurrent, _slips
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, same
from gradcli.layers.cs231n import ROWS, Form, out
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s


# next_h = tanh(x Wx + prev_h Wh + b)
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., D), prev_h (..., H), Wx (..., D, H), Wh (..., H, H), b (..., H)
    -> next_h (..., H)."""
    x, h, Wx, Wh = t["x"], t["prev_h"], t["Wx"], t["Wh"]
    a = _recurrent.affine(x, h, Wx, Wh, t["b"])
    next_h = np.tanh(a)  # complex-safe
    return next_h, {"x": x, "prev_h": h, "Wx": Wx, "Wh": Wh, "next_h": next_h, "a": a}


def shown(cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """a = x Wx + prev_h Wh + b (..., H), the pre-activation: what compute shows."""
    return {"a": cache["a"]}


# da = dnext_h * (1 - next_h^2)
# dWx = x^T da   dWh = prev_h^T da   db = sum da   dx = da Wx^T   dprev_h = da Wh^T
# (weights summed over the batch axes)
def backward(dnext_h: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dnext_h (..., H) -> {"x": (..., D), "prev_h": (..., H), "Wx": (D, H), "Wh": (H, H),
    "b": (H,)}."""
    return _from_da(dnext_h * (1 - cache["next_h"] ** 2), cache)


def _from_da(da: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    g = _recurrent.affine_backward(da, cache["x"], cache["prev_h"], cache["Wx"], cache["Wh"])
    return {"x": g["x"], "prev_h": g["h"], "Wx": g["Wx"], "Wh": g["Wh"], "b": g["b"]}


def variants(t: Arrays, options: Any, dnext_h: np.ndarray) -> dict[str, tuple[str, dict]]:
    """tanh's derivative slipped (layers/_slips.py), for the diagnosis: da feeds every
    gradient, so one slip shows in all five."""
    cache = forward(t)[1]
    a = _recurrent.affine(t["x"], t["prev_h"], t["Wx"], t["Wh"], t["b"])
    slips = _slips.tanh(cache["next_h"], "next_h", {"prev_h": cache["prev_h"], "a": a})
    return {
        f"rnn_step:{key}": (
            f"with da = {_slips.times('dnext_h', used)} where da = dnext_h * (1 - next_h^2) "
            f"belongs: {why} (da feeds dx, dprev_h, dWx, dWh and db: each gradient that "
            f"took this da is off, and only those)",
            _from_da(dnext_h * factor, cache),
        )
        for key, used, why, factor in slips
    }


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    batch = _recurrent.check_shapes("rnn_step", s, "x", "prev_h", gates=1)
    return (*batch, s["prev_h"][-1])


def working_elements(s: Shapes, options: Any = None) -> int:
    """The pre-activation a and its gradient da, both output-sized."""
    return _recurrent.working(np.broadcast_shapes(s["x"][:-1], s["prev_h"][:-1]), s["Wh"][1])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., d] and prev_h[..., k] move next_h[..., :] of their own example; Wx[d, j],
    Wh[k, j] and b[j] move next_h[..., j]."""
    batch = np.broadcast_shapes(s["x"][:-1], s["prev_h"][:-1])
    H, nb = s["prev_h"][-1], len(batch)
    if name in ("x", "prev_h"):
        return (*_recurrent.input_maps(s[name][:-1], batch), None)
    return {
        "Wx": (None, same(nb, H)),
        "Wh": (None, same(nb, H)),
        "b": (same(nb, H),),
    }[name]


def explain(v: Shown) -> Formulas:
    sh, over = v.shapes, "Σ_batch " if v.batch else ""
    fwd = [
        "a = x · Wx + prev_h · Wh + b,   next_h = tanh(a)",
        f"next_h {_s(v.out_shape)} = tanh(x {_s(sh['x'])} · Wx {_s(sh['Wx'])} + prev_h "
        f"{_s(sh['prev_h'])} · Wh {_s(sh['Wh'])} + b {_s(sh['b'])})",
        "∂L/∂a = ∂L/∂next_h ⊙ (1 - next_h²)   (tanh' = 1 - tanh², from the output)",
    ]
    return Formulas(fwd, {
        "x": ([f"∂L/∂x {_s(sh['x'])} = ∂L/∂a · Wxᵀ"],
              "the gradient of the pre-activation flows back through the input weights"),
        "prev_h": ([f"∂L/∂prev_h {_s(sh['prev_h'])} = ∂L/∂a · Whᵀ"],
                   "the path to earlier time steps: backprop through time repeats it"),
        "Wx": ([f"∂L/∂Wx {_s(sh['Wx'])} = {over}xᵀ · ∂L/∂a"],
               "each weight pairs one input feature with one unit's pre-activation gradient"),
        "Wh": ([f"∂L/∂Wh {_s(sh['Wh'])} = {over}prev_hᵀ · ∂L/∂a"],
               "as for Wx, with the previous state in place of the input"),
        "b": ([f"∂L/∂b {_s(sh['b'])} = {over}∂L/∂a"],
              "the bias adds straight into a, so its gradient is a's"),
    }, ("H",))  # fmt: skip


SKELETON = """
def forward(x, prev_h, Wx, Wh, b):
    # next_h = tanh(x Wx + prev_h Wh + b)
    # x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,) -> next_h (N, H)
    raise NotImplementedError


def backward(grad_output, x, prev_h, Wx, Wh, b):
    # da = dnext_h * (1 - next_h**2)
    # dx = da Wx^T   dprev_h = da Wh^T   dWx = x^T da   dWh = prev_h^T da   db = sum_N da
    dnext_h = grad_output
    raise NotImplementedError
    return {"x": ..., "prev_h": ..., "Wx": ..., "Wh": ..., "b": ...}
"""


LAYER = Layer(
    name="rnn_step",
    shown=shown,
    summary="next_h = tanh(x Wx + prev_h Wh + b)",
    tensors=(
        TensorInfo("x", ("D",), ("d",), "input", "input at this time step"),
        TensorInfo("prev_h", ("H",), ("k",), "input", "hidden state of the previous step"),
        TensorInfo("Wx", ("D", "H"), ("d", "j"), "weight", "input-to-hidden weights"),
        TensorInfo("Wh", ("H", "H"), ("k", "j"), "weight", "hidden-to-hidden weights"),
        TensorInfo("b", ("H",), ("j",), "bias", "bias", optional=True),
    ),
    output=TensorInfo("next_h", ("H",), ("j",), "output", "next hidden state"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (3, 4), "prev_h": (3, 5), "Wx": (4, 5), "Wh": (5, 5), "b": (5,)},
    footprint=footprint,
    working=working_elements,
    explain=explain,
    skeleton=SKELETON,
    variants=variants,
    cs231n=(
        Form("rnn_step_forward", "rnn_step_backward", {"x": ROWS, "prev_h": ROWS}, out(ROWS),
             batch=("x", "prev_h"), hint="x (N, D), prev_h (N, H)"),
    ),
)
