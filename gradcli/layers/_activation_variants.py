"""The activations' classic wrong backward passes (for the diagnosis, gradcli.checking.
hypotheses): each recomputed from the forward's input, so a gradient under test is named only
when it is exactly what that mistake gives."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.layers import _slips

Variants = dict[str, tuple[str, dict[str, np.ndarray]]]


def relu(t: Any, options: Any, dy: np.ndarray) -> Variants:
    x = np.real(np.asarray(t["x"], dtype=np.float64))
    return {
        "relu:mask-inverted": ("with the mask inverted (dy where x <= 0, 0 where x > 0)",
                               {"x": dy * (x <= 0)}),
        "relu:no-mask": ("with no mask (dx = dy: the upstream gradient passed through as it is)",
                         {"x": dy + 0.0 * x}),
        "relu:mask-on-dy": ("with the mask taken from the upstream gradient (dy > 0), not from x",
                            {"x": dy * (dy > 0) + 0.0 * x}),
        "relu:forward-returned": ("returning the forward's output max(x, 0), not dy times the "
                                  "mask", {"x": np.maximum(x, 0) + 0.0 * dy}),
    }  # fmt: skip


def leaky_relu(t: Any, options: Any, dy: np.ndarray) -> Variants:
    x = np.real(np.asarray(t["x"], dtype=np.float64))
    alpha = getattr(options, "alpha", 0.01)
    return {
        "leaky_relu:no-slope": ("with 0 instead of alpha where x <= 0 (a plain relu's mask)",
                                {"x": dy * (x > 0)}),
        "leaky_relu:slope-swapped": ("with alpha where x > 0 and 1 where x <= 0",
                                     {"x": dy * np.where(x > 0, alpha, 1.0)}),
    }  # fmt: skip


def sigmoid(t: Any, options: Any, dy: np.ndarray) -> Variants:
    x = np.real(np.asarray(t["x"], dtype=np.float64))
    s = 1 / (1 + np.exp(-x))
    return {
        "sigmoid:x-for-output": ("with x where the output belongs: dy x (1 - x) instead of "
                                 "dy y (1 - y)", {"x": dy * x * (1 - x)}),
        "sigmoid:no-upstream": ("without the upstream gradient: y (1 - y) alone",
                                {"x": s * (1 - s) + 0.0 * dy}),
        "sigmoid:half-derivative": ("with dy y instead of dy y (1 - y)", {"x": dy * s}),
        # x in one of the two factors only (outside test t52b: s (1 - x) went without a hint)
        "sigmoid:x-in-second": ("with dy y (1 - x) instead of dy y (1 - y): x where the "
                                "output belongs in the second factor", {"x": dy * s * (1 - x)}),
        "sigmoid:x-in-first": ("with dy x (1 - y) instead of dy y (1 - y): x where the "
                               "output belongs in the first factor", {"x": dy * x * (1 - s)}),
    }  # fmt: skip


def tanh(t: Any, options: Any, dy: np.ndarray) -> Variants:
    x = np.real(np.asarray(t["x"], dtype=np.float64))
    y = np.tanh(x)
    return {
        "tanh:x-for-output": ("with x where the output belongs: dy (1 - x^2) instead of "
                              "dy (1 - y^2)", {"x": dy * (1 - x**2)}),
        "tanh:not-squared": ("with dy (1 - y) instead of dy (1 - y^2)", {"x": dy * (1 - y)}),
        "tanh:no-upstream": ("without the upstream gradient: 1 - y^2 alone",
                             {"x": 1 - y**2 + 0.0 * dy}),
    }  # fmt: skip


def softmax(t: Any, options: Any, dy: np.ndarray) -> Variants:
    x = np.real(np.asarray(t["x"], dtype=np.float64))
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    how = "dx = y (dy - sum(dy y)) over each row"
    out: Variants = {
        "softmax:diagonal-only": (f"with only the Jacobian's diagonal: dy y (1 - y) ({how})",
                                  {"x": dy * y * (1 - y)}),
        "softmax:no-rowsum": (f"without the rowsum term: dx = y dy ({how})", {"x": y * dy}),
    }  # fmt: skip
    if x.ndim > 1:
        out["softmax:sum-over-wrong-axis"] = (
            f"with the sum over the first axis instead of each row ({how})",
            {"x": y * (dy - np.sum(dy * y, axis=0, keepdims=True))},
        )
    return out


def gelu(t: Any, options: Any, dy: np.ndarray) -> Variants:
    """The tanh form's derivative with the cubic term's 3 or its whole derivative left out,
    and the exact (erf) GELU's derivative under the tanh form's forward."""
    x = np.real(np.asarray(t["x"], dtype=np.float64))
    c, a = math.sqrt(2 / math.pi), 0.044715
    th = np.tanh(c * (x + a * x**3))

    def with_du(du: np.ndarray) -> np.ndarray:
        return dy * (0.5 * (1 + th) + 0.5 * x * (1 - th**2) * du)

    du = c * (1 + 3 * a * x**2)
    # the tanh inside, slipped as every layer's tanh is (layers/_slips.py): 1 - t where
    # 1 - t^2 belongs went without a hint (outside test t52b F2)
    slipped = {
        f"gelu:tanh-{key}": (
            f"with 0.5 x {_slips.wrapped(used)}du/dx where 0.5 x (1 - t^2) du/dx "
            f"belongs (t = tanh(u)): {why}",
            {"x": dy * (0.5 * (1 + th) + 0.5 * x * factor * du)})
        for key, used, why, factor in _slips.tanh(th, "t")
    }  # fmt: skip
    erf = np.vectorize(math.erf, otypes=[np.float64])(x / math.sqrt(2)) if x.size else x
    exact = 0.5 * (1 + erf) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    right = "du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)"
    return {
        "gelu:cubic-without-3": (
            f"with du/dx = sqrt(2/pi) (1 + 0.044715 x^2) where {right} belongs: the 3 of "
            "d(x^3)/dx = 3 x^2 left out", {"x": with_du(c * (1 + a * x**2))}),
        "gelu:cubic-derivative-missing": (
            f"with du/dx = sqrt(2/pi) where {right} belongs: the cubic term's derivative "
            "left out", {"x": with_du(c + 0.0 * x)}),
        "gelu:erf-derivative": (
            "with the exact GELU's derivative, 1/2 (1 + erf(x/sqrt 2)) + x exp(-x^2/2) / "
            "sqrt(2 pi), where the forward is the tanh approximation: differentiate the tanh "
            "form the forward computes", {"x": dy * exact}),
        **slipped,
    }  # fmt: skip
