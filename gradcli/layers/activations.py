"""Elementwise activations: relu, leaky_relu, sigmoid, tanh, gelu (tanh approximation).

Shapes: x (...), y (...) of the same shape; every axis is a batch axis (an element's output
depends on that element alone), so each coordinate moves exactly its own output: one color.

Forwards are complex-safe (``--method complex``): a branch is chosen on the real part, so a
complex-step perturbation passes through the branch's own analytic formula.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.errors import OptionError, brief
from gradcli.layers import _activation_variants as classic
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    NoOptions,
    Shapes,
    TensorInfo,
    option,
    same,
)
from gradcli.layers.cs231n import Form
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s
from gradcli.records import record


@record
class LeakyOptions:
    alpha: float = option(0.01, "slope for x <= 0: a finite number (torch's negative_slope)")

    def __post_init__(self) -> None:
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a):
            raise OptionError(f"alpha must be a finite number, got {brief(a)}", key="options.alpha")


# y = max(x, 0)
def relu_forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    x = t["x"]
    on = x.real > 0
    return x * on, {"on": on}


# dL/dx = dL/dy * [x > 0]   (0 at x = 0 exactly, as in torch)
def relu_backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"x": dy * cache["on"]}


def sign_kinks(name: str, t: Arrays, options: Any, step: np.ndarray,
               start: np.ndarray | None = None) -> np.ndarray | None:  # fmt: skip
    """Where x's sign pattern (x > 0, the forwards' branch) changes along the segment from x
    (or x + start) by ``step``, or x sits at 0: relu's and leaky_relu's kink."""
    if isinstance(options, LeakyOptions) and options.alpha == 1:
        return None  # y = x: no kink at all
    x = t["x"]
    end, x0 = x + step, x if start is None else x + start
    return ((step > 0) & (x0 < 0) & (end >= 0)) | ((step < 0) & (end <= 0) & (x0 > 0)) | (
        (step == 0) & (x == 0)
    )


# y = x (x > 0), alpha x (x <= 0)
def leaky_forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    x, alpha = t["x"], (options or LeakyOptions()).alpha
    slope = np.where(x.real > 0, 1.0, alpha).astype(x.real.dtype)
    return x * slope, {"slope": slope}


# dL/dx = dL/dy * (1 if x > 0 else alpha)
def leaky_backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"x": dy * cache["slope"]}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow: for x < 0 the same value as e^x / (1 + e^x)."""
    s = np.where(x.real >= 0, 1.0, -1.0).astype(x.real.dtype)  # constant near x: analytic
    e = np.exp(-s * x)  # at most 1 in modulus of its real part: never overflows
    return np.where(s > 0, 1.0, e) / (1.0 + e)


# y = 1 / (1 + exp(-x))
def sigmoid_forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    y = _sigmoid(t["x"])
    return y, {"y": y}


# dL/dx = dL/dy * y (1 - y)
def sigmoid_backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    y = cache["y"]
    return {"x": dy * (y * (1 - y))}


# y = tanh(x)
def tanh_forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    y = np.tanh(t["x"])
    return y, {"y": y}


# dL/dx = dL/dy * (1 - y^2)
def tanh_backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    y = cache["y"]
    return {"x": dy * (1 - y * y)}


GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


# y = x/2 (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)   (the tanh approximation),
# evaluated as x sigmoid(2u): the same function, without 1 + tanh(u) cancelling for x << 0
def gelu_forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    x = t["x"]
    s = _sigmoid(2 * GELU_C * (x + GELU_A * x * x * x))
    return x * s, {"x": x, "s": s}


# dL/dx = dL/dy * (1/2 (1 + tanh u) + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
#       = dL/dy * (s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2)),  s = sigmoid(2u)
def gelu_backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    x, s = cache["x"], cache["s"]
    du = GELU_C * (1 + 3 * GELU_A * x * x)
    return {"x": dy * (s + 2 * x * s * (1 - s) * du)}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    return tuple(s["x"])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[i] moves y[i] alone: a diagonal footprint, so every coordinate shares one color."""
    return tuple(same(k, n) for k, n in enumerate(s["x"]))


def working_elements(s: Shapes, options: Any = None) -> int:
    """A mask or a second x-sized array in the cache, and one temporary in the backward."""
    return 2 * math.prod(s["x"])


def _words(forward: str, grad: str, intuition: str) -> Callable[[Shown], Formulas]:
    def explain(v: Shown) -> Formulas:
        sh = _s(v.shapes["x"])
        # the spec's option beside its letter (alpha 0 read nowhere: outside test t23 F13)
        alpha = getattr(v.options, "alpha", None)
        said = forward if alpha is None else f"{forward},  α = {alpha:g}"
        return Formulas(
            [said, f"y {sh} = f(x {sh}), element by element"],
            {"x": ([f"∂L/∂x {sh} = {grad}"], intuition)},
            ("n",),
        )

    return explain


def _skeleton(signature: str, forward: str, backward: str) -> str:
    return f"""
def forward(x{signature}):
    # {forward}                       x (...) -> y, the shape of x
    raise NotImplementedError


def backward(grad_output, x{signature}):
    # {backward}
    dy = grad_output
    raise NotImplementedError
    return {{"x": ...}}
"""


WORDS = {
    "relu": (
        _words("y = max(x, 0)", "∂L/∂y ⊙ [x > 0]",
               "the gradient passes where the input was positive and stops elsewhere (0 at "
               "x = 0, as torch; a kink there: checked one-sidedly)"),
        _skeleton("", "y = max(x, 0)", "dx = dy * (x > 0)"),
    ),
    "leaky_relu": (
        _words("y = x if x > 0 else α x", "∂L/∂y ⊙ (1 if x > 0 else α)",
               "slope 1 on the positive side and alpha on the other (a kink at 0)"),
        _skeleton(", alpha=0.01", "y = x if x > 0 else alpha * x",
                  "dx = dy * (1 if x > 0 else alpha)"),
    ),
    "sigmoid": (
        _words("y = 1 / (1 + e^(-x))", "∂L/∂y ⊙ y (1 - y)",
               "the slope is largest (1/4) at 0 and vanishes for large |x|"),
        _skeleton("", "y = 1 / (1 + exp(-x))", "dx = dy * y * (1 - y)"),
    ),
    "tanh": (
        _words("y = tanh(x)", "∂L/∂y ⊙ (1 - y²)",
               "the slope is 1 at 0 and vanishes as |x| grows"),
        _skeleton("", "y = tanh(x)", "dx = dy * (1 - y**2)"),
    ),
    "gelu": (
        _words("y = x/2 (1 + tanh(u)),  u = √(2/π) (x + 0.044715 x³)  (tanh approximation)",
               "∂L/∂y ⊙ (½ (1 + tanh u) + ½ x (1 - tanh² u) √(2/π) (1 + 3·0.044715 x²))",
               "the product rule on x times a smoothed step (torch's approximate='tanh')"),
        _skeleton("", "y = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
                  "dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))"),
    ),
}  # fmt: skip


def _layer(
    name: str,
    summary: str,
    forward: Callable[..., tuple[np.ndarray, dict[str, Any]]],
    backward: Callable[..., dict[str, np.ndarray]],
    options: type = NoOptions,
    kinks: Callable[..., np.ndarray | None] | None = None,
    variants: Callable[..., dict] | None = None,
    cs231n: tuple[Form, ...] = (),
    kink_words: str = "",
) -> Layer:
    def arrays_forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        y, cache = forward(t, options)
        return np.asarray(y), cache  # a 0-d x gives a numpy scalar, and the engine wants arrays

    def arrays_backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in backward(dy, cache).items()}

    return Layer(
        name=name,
        summary=summary,
        tensors=(TensorInfo("x", ("n",), ("i",), "input", "input, any shape (elementwise)"),),
        output=TensorInfo("y", ("n",), ("i",), "output", f"{name}(x), the shape of x"),
        forward=arrays_forward,
        backward=arrays_backward,
        output_shape=output_shape,
        default_shapes={"x": (6,)},
        options=options,
        footprint=footprint,
        working=working_elements,
        kinks=kinks,
        kink_words=kink_words,
        variants=variants,
        explain=WORDS[name][0],
        skeleton=WORDS[name][1],
        cs231n=cs231n,
    )


RELU = _layer(
    "relu", "y = max(x, 0)", relu_forward, relu_backward, kinks=sign_kinks, variants=classic.relu,
    cs231n=(Form("relu_forward", "relu_backward"),),
    kink_words="x == 0, where relu's slope may be any value in [0, 1]",
)  # fmt: skip
LEAKY_RELU = _layer(
    "leaky_relu",
    "y = x if x > 0 else alpha x",
    leaky_forward,
    leaky_backward,
    LeakyOptions,
    kinks=sign_kinks,
    variants=classic.leaky_relu,
    kink_words="x == 0, where leaky_relu's slope may be any value between alpha and 1",
)
SIGMOID = _layer(
    "sigmoid", "y = 1 / (1 + exp(-x))", sigmoid_forward, sigmoid_backward,
    variants=classic.sigmoid,
)  # fmt: skip
TANH = _layer("tanh", "y = tanh(x)", tanh_forward, tanh_backward, variants=classic.tanh)
def gelu_forms(t: Arrays, options: Any = None) -> dict[str, tuple[str, np.ndarray]]:
    """The exact GELU, x/2 (1 + erf(x / sqrt 2)): torch's default, 2e-4 from the tanh form."""
    x = np.asarray(t["x"]).real
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return {"erf": (
        "your forward is the exact GELU, x/2 (1 + erf(x/sqrt 2)) (torch's default "
        "nn.GELU()); the built-in gelu is the tanh approximation (torch's "
        "approximate='tanh'): check yours as a custom layer", x / 2 * (1 + erf(x / math.sqrt(2))))}


GELU = dataclasses.replace(_layer(
    "gelu",
    "y = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (tanh approximation)",
    gelu_forward,
    gelu_backward,
    variants=classic.gelu,
), forms=gelu_forms)
