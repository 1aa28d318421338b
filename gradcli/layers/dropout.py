"""Inverted dropout with a fixed mask, so the forward is a deterministic function of x.

Shapes: x (...), y (...) of the same shape. The mask is drawn once from the option ``seed`` over
the whole x the spec gives (every element of every example its own draw):
``keep = np.random.default_rng(seed).random(x.shape) >= p``, ``y = x * keep / (1 - p)``.
A layer of your own reproduces it with those two lines. The numerical engine's extra leading
axes share the mask, because its axes are settled from the spec as a count from the end.
p = 0 is the identity; p = 1 is refused (everything dropped: the scale 1/(1-p) is infinite and
there is no gradient left to check).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gradcli.errors import OptionError, brief
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, option, same
from gradcli.layers.cs231n import ROWS, Form, out
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s
from gradcli.records import record


@record
class Options:
    p: float = option(0.5, "probability of dropping an element: 0 <= p < 1 (torch's p)")
    seed: int = option(0, "seed of the fixed mask: an integer >= 0")

    def __post_init__(self) -> None:
        p = self.p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
            raise OptionError(
                f"p must be a number with 0 <= p < 1 (1 would drop every element), got {brief(p)}",
                key="options.p",
            )
        s = self.seed
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise OptionError(f"seed must be an integer >= 0, got {brief(s)}", key="options.seed")


def resolve(options: Options, s: Shapes) -> Options:
    resolved = dataclasses.replace(options)
    # the mask's rank lives beside the fields, not as one: a user's --impl dropout receives
    # the options as keywords and must see only p and seed
    object.__setattr__(resolved, "rank", len(s["x"]))
    return resolved


def scaled_mask(shape: tuple[int, ...], options: Any) -> np.ndarray:
    """keep / (1 - p) over ``shape``, in float64."""
    o = options or Options()
    keep = np.random.default_rng(o.seed).random(shape) >= o.p
    return keep * (1.0 / (1.0 - o.p))


# y = x * keep / (1 - p),   keep = default_rng(seed).random(x.shape) >= p
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    x = t["x"]
    rank = getattr(options, "rank", x.ndim)
    mask = scaled_mask(x.shape[x.ndim - rank :], options).astype(x.real.dtype)
    return np.asarray(x * mask), {"mask": mask}  # a 0-d x: an array, not a numpy scalar


# dL/dx = dL/dy * keep / (1 - p)
def backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"x": np.asarray(dy * cache["mask"])}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    return tuple(s["x"])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[i] moves y[i] alone: a diagonal footprint, one color."""
    return tuple(same(k, n) for k, n in enumerate(s["x"]))


def working_elements(s: Shapes, options: Any = None) -> int:
    """The mask (drawn in float64, kept in x's dtype) and the backward's product."""
    return 3 * math.prod(s["x"])


def explain(v: Shown) -> Formulas:
    sh, o = _s(v.shapes["x"]), v.options or Options()
    return Formulas(
        [f"y = x ⊙ keep / (1 - p),  p = {o.p:g},  keep = default_rng({o.seed}).random({sh}) >= p",
         "a fixed mask: the forward is deterministic"],
        {"x": ([f"∂L/∂x {sh} = ∂L/∂y ⊙ keep / (1 - p)"],
               "the gradient flows through the kept elements, scaled like them")},
        ("n",),
    )  # fmt: skip


SKELETON = """
def forward(x, p=0.5, seed=0):
    # keep = np.random.default_rng(seed).random(x.shape) >= p;   y = x * keep / (1 - p)
    raise NotImplementedError


def backward(grad_output, x, p=0.5, seed=0):
    # dx = dy * keep / (1 - p)   (the same mask)
    dy = grad_output
    raise NotImplementedError
    return {"x": ...}
"""


def dropout_param(options: Any, s: Shapes) -> tuple[dict[str, Any]]:
    """CS231n's dropout_param: their p is the probability of keeping (since 2017)."""
    o = options or Options()
    return ({"p": 1.0 - o.p, "mode": "train", "seed": o.seed},)


def expected(t: Arrays, options: Any, theirs: np.ndarray) -> tuple[np.ndarray, str]:
    """Their mask is their own generator's: where they keep x, inverted dropout's x / (1 - p);
    and how many they keep must be a plausible draw of keeping with probability 1 - p (p read
    as the keep probability where it is the drop rate keeps the right values, too few or too
    many of them): the problem, or ""."""
    o = options or Options()
    x = np.asarray(t["x"])
    out = np.where(theirs != 0, x * (1.0 / (1.0 - o.p)), 0.0).astype(theirs.dtype)
    n = int(np.count_nonzero(x))  # a zero of x is zero kept or not
    kept = int(np.count_nonzero(np.asarray(theirs)[x != 0]))
    spread = math.sqrt(n * o.p * (1.0 - o.p))
    said = (f"it keeps {kept} of {n} nonzero elements ({kept / n:.0%}); keeping each with "
            f"probability 1 - p = {1.0 - o.p:g} keeps {n * (1.0 - o.p):.0f} +- {spread:.0f}")
    if abs(kept - n * (1.0 - o.p)) > 6.0 * spread + 1.0:  # six standard deviations of a draw
        if abs(kept - n * o.p) <= 6.0 * spread + 1.0 and abs(o.p - 0.5) > 1e-9:
            # the count is the drop rate's: CS231n's p read as the probability of dropping
            said += (f"; {kept / n:.0%} is about p = {o.p:g}, the drop rate: your code reads "
                     f"dropout_param's p ({1.0 - o.p:g}) as the probability of dropping, where "
                     f"it is the probability of keeping")
        return out, said
    # too few elements for the count alone: the kept ones' scale names the probability the
    # forward keeps with (inverted dropout scales by 1 / it), when the count fits that one
    keep = kept_with(np.asarray(x, dtype=np.float64), np.asarray(theirs, dtype=np.float64))
    if keep is None or abs(keep - (1.0 - o.p)) < 1e-6 * (1.0 - o.p):
        return out, ""
    if abs(kept - n * keep) > 3.0 * math.sqrt(n * keep * (1.0 - keep)) + 1.0:
        return out, ""
    return out, (f"it keeps {kept} of {n} nonzero elements ({kept / n:.0%}) and scales them "
                 f"by 1 / {keep:.6g}: it keeps with probability {keep:.6g} where 1 - p = "
                 f"{1.0 - o.p:g} belongs ({n * (1.0 - o.p):.0f} +- {spread:.0f} kept; "
                 "dropout_param's p is the probability of keeping)")


def redraw_agrees(t: Arrays, options: Any) -> float:
    """The chance that two masks drawn anew, each element kept with probability 1 - p (or p:
    the chance is the same, whichever a student's code reads p as), agree on every nonzero
    element of x: on 6 elements at p = 0.9 a third of such pairs do (most drop all of them)."""
    o = options or Options()
    n = int(np.count_nonzero(np.asarray(t["x"])))
    return float((o.p**2 + (1.0 - o.p) ** 2) ** n)


def kept_with(x: np.ndarray, theirs: np.ndarray) -> float | None:
    """The probability an inverted dropout keeps with, read from the one scale 1 / q its kept
    elements share (theirs = x / q wherever x is kept), if they share one in (1, inf)."""
    kept = (x != 0) & (theirs != 0)
    if not kept.any() or theirs.shape != x.shape:
        return None
    ratio = theirs[kept] / x[kept]
    scale = float(np.median(ratio))
    if not 1.0 < scale < math.inf or np.any(np.abs(ratio / scale - 1) > 1e-9):
        return None
    return 1.0 / scale


LAYER = Layer(
    name="dropout",
    summary="y = x * keep / (1 - p), keep = default_rng(seed).random(x.shape) >= p (fixed mask)",
    tensors=(TensorInfo("x", ("n",), ("i",), "input", "input, any shape; the mask covers all"),),
    output=TensorInfo("y", ("n",), ("i",), "output", "x with dropped elements zero"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (6,)},
    options=Options,
    footprint=footprint,
    working=working_elements,
    resolve=resolve,
    redraw_agrees=redraw_agrees,
    explain=explain,
    skeleton=SKELETON,
    cs231n=(
        Form("dropout_forward", "dropout_backward", {"x": ROWS}, out(ROWS), dropout_param,
             expected=expected,
             layout="dropout_param p = 1 - p, the keep probability; their own mask"),
    ),  # fmt: skip
)
