"""Layer normalization over the last axis (torch.nn.LayerNorm(D) with its affine parameters).

Shapes: x (..., D), gamma (D,), beta (D,), y (..., D); ``...`` are batch axes. Each row x[..., :]
is normalized with its own mean and (biased) variance; rows never mix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers import _norm, _norm_variants
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, batch_maps, option
from gradcli.layers.cs231n import ROWS, Form, out
from gradcli.records import record


@record
class Options:
    eps: float = option(1e-5, "added to the variance: a number > 0")

    def __post_init__(self) -> None:
        _norm.check_eps(self.eps)


# mu = mean_d x[d]   var = mean_d (x[d] - mu)^2   xhat[d] = (x[d] - mu) / sqrt(var + eps)
# y[d] = gamma[d] xhat[d] + beta[d]
def shown(cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """mu (...), var (...), xhat (..., D): what compute shows."""
    x = cache["x"]
    return {"mu": x.mean(axis=-1), "var": x.var(axis=-1), "xhat": cache["xhat"]}


def forward(
    t: Arrays, options: Any = None, ddof: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., D), gamma (..., D), beta (..., D) -> y (..., D)."""
    options = options or Options()
    x, gamma, beta = t["x"], t["gamma"], t["beta"]
    xhat, r = _norm.normalize(x, (-1,), options.eps, ddof)
    cache = {"xhat": xhat, "r": r, "gamma": gamma, "beta": beta, "x": x}
    return _norm.affine(xhat, gamma, beta, 0), cache


# dxhat = dy gamma    dx = r (dxhat - mean_d dxhat - xhat mean_d(dxhat xhat))
# dgamma[d] = sum_rows dy[d] xhat[d]    dbeta[d] = sum_rows dy[d]
def backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dy (..., D) -> {"x": (..., D), "gamma": (D,), "beta": (D,)}."""
    xhat, r = cache["xhat"], cache["r"]
    dx = _norm.dnormalize(dy * cache["gamma"], xhat, r, (-1,))
    return {"x": dx, **_norm.param_grads(dy, xhat)}


def variants(t: Arrays, options: Any, dy: np.ndarray) -> dict[str, tuple[str, dict]]:
    """Classic wrong dx (gradcli.layers._norm_variants), for the diagnosis."""
    options = options or Options()
    return _norm_variants.variants(forward(t, options)[1], dy, (-1,), 0)


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x = s["x"]
    if len(x) < 1 or x[-1] < 1:
        got = "a scalar" if len(x) < 1 else f"shape {list(x)}"
        raise ShapeError(
            f"layernorm: x must be (..., D) with D >= 1 features to normalize, got {got}",
            key="x",
        )
    _norm.check_params("layernorm", s, x[-1], "D")
    return tuple(x)


def working_elements(s: Shapes, options: Any = None) -> int:
    x = s["x"]
    return _norm.working(math.prod(x), math.prod(x[:-1]))


def perturbed(name: str, cache: dict, g: np.ndarray, idx: np.ndarray, values: Any) -> Any:
    """The loss with x[idx[p]] = values[p], row by row in closed form (see _norm.perturbed)."""
    if name != "x":
        return None  # gamma[d] and beta[d] move one column: coloring takes them in one pass
    D = cache["x"].shape[-1]
    return _norm.perturbed(cache, g, idx, values, np.arange(cache["x"].size) // D, D)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., d] moves only its own row y[..., :]; gamma[d] and beta[d] move y[..., d]."""
    batch = s["x"][:-1]
    if name == "x":
        return (*batch_maps(batch), None)
    return _norm.param_footprint(len(batch), s["x"][-1])


def explain(v: Any) -> Any:
    return _norm.words(v, "x", "y", "each row on its own", ("d",), ())


SKELETON = """
def forward(x, gamma, beta, eps=1e-5):
    # mu = mean of each row of x (over the last axis), var = mean((x - mu)**2) (biased)
    # xhat = (x - mu) / sqrt(var + eps);   y = gamma * xhat + beta
    # x (N, D), gamma (D,), beta (D,) -> y (N, D)
    raise NotImplementedError


def backward(grad_output, x, gamma, beta, eps=1e-5):
    # dxhat = dy * gamma;   r = 1 / sqrt(var + eps)
    # dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))    (means per row)
    # dgamma = sum over the rows of dy * xhat;   dbeta = sum over the rows of dy
    dy = grad_output
    raise NotImplementedError
    return {"x": ..., "gamma": ..., "beta": ...}
"""


def factors(s: Shapes, options: Any = None) -> list[tuple[float, str, str]]:
    """Each row's statistics run over its D values (Layer.factors)."""
    return _norm.unbiased(s["x"][-1]) if s["x"] else []


LAYER = Layer(
    name="layernorm",
    shown=shown,
    means=("d",),
    factors=factors,
    summary="y = gamma (x - mean(x)) / sqrt(var(x) + eps) + beta,  over the last axis",
    tensors=(
        TensorInfo("x", ("D",), ("d",), "input", "input rows, normalized one by one"),
        TensorInfo("gamma", ("D",), ("d",), "weight", "scale per feature", init="ones"),
        TensorInfo("beta", ("D",), ("d",), "bias", "shift per feature", optional=True),
    ),
    output=TensorInfo("y", ("D",), ("d",), "output", "normalized, scaled and shifted rows"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (3, 5), "gamma": (5,), "beta": (5,)},
    options=Options,
    footprint=footprint,
    working=working_elements,
    perturbed=perturbed,
    perturbed_elements=_norm.perturbed_elements,
    explain=explain,
    skeleton=SKELETON,
    variants=variants,
    cs231n=(
        Form("layernorm_forward", "layernorm_backward", {"x": ROWS}, out(ROWS),
             lambda o, s: ({"eps": (o or Options()).eps},)),
    ),  # fmt: skip
    forms=_norm.forms("layernorm", forward),
)
