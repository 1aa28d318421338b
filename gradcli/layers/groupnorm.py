"""Group normalization (torch.nn.GroupNorm(groups, C), channel-last).

Shapes: X (..., H, W, C), gamma (C,), beta (C,), Y (..., H, W, C); ``...`` are batch axes. The C
channels split into ``groups`` runs of C/groups consecutive channels; each example's group is
normalized over its channels and every position. ``spatial: 1`` takes sequences X (..., L, C),
``spatial: 0`` feature vectors X (..., C) (each group then spans only its channels).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import OptionError, ShapeError, brief
from gradcli.layers import _norm, _norm_variants
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, batch_maps, option
from gradcli.layers.cs231n import CHANNELS, NCHW, Form, out
from gradcli.records import record


@record
class Options:
    groups: int = option(2, "channel groups, each normalized on its own: must divide C")
    eps: float = option(1e-5, "added to the variance: a number > 0")
    spatial: int = option(
        2, "axes before the channels: 2 for images X (H, W, C), 1 for (L, C), 0 for (C,)"
    )

    def __post_init__(self) -> None:
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1:
            raise OptionError(
                f"groups must be an integer >= 1 that divides C, got {brief(self.groups)}",
                key="options.groups",
            )
        _norm.check_eps(self.eps)
        _norm.check_spatial(self.spatial)


def _grouped(X: np.ndarray, groups: int) -> np.ndarray:
    """(..., C) -> (..., groups, C/groups): group a holds channels a*C/groups onwards."""
    return X.reshape(X.shape[:-1] + (groups, X.shape[-1] // groups))


def _axes(spatial: int) -> tuple[int, ...]:
    """On the grouped array: the spatial axes and the channels within a group."""
    return (*range(-spatial - 2, -2), -1)


# per example and group a (channels c in a):  mu_a = mean_{i,j,c} X[i,j,c]
# var_a = mean_{i,j,c} (X[i,j,c] - mu_a)^2    Xhat[i,j,c] = (X[i,j,c] - mu_a) / sqrt(var_a + eps)
# Y[i,j,c] = gamma[c] Xhat[i,j,c] + beta[c]
def forward(
    t: Arrays, options: Any = None, ddof: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., [H, W,] C), gamma (..., C), beta (..., C) -> Y (..., [H, W,] C)."""
    options = options or Options()
    X, gamma, beta, sp = t["X"], t["gamma"], t["beta"], options.spatial
    xhat, r = _norm.normalize(_grouped(X, options.groups), _axes(sp), options.eps, ddof)
    xhat = xhat.reshape(X.shape)
    cache = {"xhat": xhat, "r": r, "gamma": gamma, "beta": beta, "x": X, "spatial": sp}
    cache["groups"] = options.groups
    return _norm.affine(xhat, gamma, beta, sp), cache


# dXhat = dY gamma    per group a: dX = r_a (dXhat - mean_a dXhat - Xhat mean_a(dXhat Xhat))
# dgamma[c] = sum_{..., i, j} dY[i,j,c] Xhat[i,j,c]    dbeta[c] = sum_{..., i, j} dY[i,j,c]
def backward(dY: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dY (..., [H, W,] C) -> {"X": X's shape, "gamma": (C,), "beta": (C,)}."""
    xhat, g = cache["xhat"], cache["groups"]
    dxhat = _grouped(dY * cache["gamma"], g)
    dX = _norm.dnormalize(dxhat, _grouped(xhat, g), cache["r"], _axes(cache["spatial"]))
    return {"X": dX.reshape(dY.shape), **_norm.param_grads(dY, xhat)}


def variants(t: Arrays, options: Any, dY: np.ndarray) -> dict[str, tuple[str, dict]]:
    """Classic wrong dX (gradcli.layers._norm_variants), for the diagnosis: each group is a
    normalization of its own, so batchnorm's and layernorm's slips are a group's too."""
    options = options or Options()
    cache, g = forward(t, options)[1], options.groups
    found = _norm_variants.slips(
        _grouped(cache["xhat"], g), cache["r"], _grouped(dY, g),
        _grouped(dY * cache["gamma"], g), _axes(options.spatial), "X", "Y",
        ", the means per example and group", other=False,
    )  # fmt: skip
    if g > 1:  # the means of dX over every channel, not per group (outside test t52b F6)
        xh, dxh, r = _grouped(cache["xhat"], g), _grouped(dY * cache["gamma"], g), cache["r"]
        every = (*_axes(options.spatial), -2)
        found["norm:means-over-channels"] = (
            "with the means of dXhat over every channel of the example, not over each group's "
            "(dX = r (dXhat - mean(dXhat) - Xhat mean(dXhat Xhat)), each mean per example and "
            "group)",
            r * (dxh - dxh.mean(axis=every, keepdims=True)
                 - xh * (dxh * xh).mean(axis=every, keepdims=True)))  # fmt: skip
    return {cause: (text, {"X": dX.reshape(dY.shape)}) for cause, (text, dX) in found.items()}


def _core(sp: int) -> tuple[str, ...]:
    return (*_norm.SPATIAL_AXES[sp], "C")


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    options = options or Options()
    X, core = s["X"], _core(options.spatial)
    if len(X) < len(core) or any(n < 1 for n in X[-len(core) :]):
        raise ShapeError(
            f"groupnorm: X must be (..., {', '.join(core)}) with every one of them >= 1 "
            f"(options.spatial {options.spatial}), got shape {list(X)}",
            key="X",
        )
    if X[-1] % options.groups:
        raise OptionError(
            f"groupnorm: groups={options.groups} does not divide C={X[-1]} (X's last axis)",
            key="options.groups",
        )
    _norm.check_params("groupnorm", s, X[-1], "C")
    return tuple(X)


def working_elements(s: Shapes, options: Any = None) -> int:
    options = options or Options()
    X = s["X"]
    return _norm.working(math.prod(X), math.prod(X[: -options.spatial - 1]) * options.groups)


def perturbed(name: str, cache: dict, g: np.ndarray, idx: np.ndarray, values: Any) -> Any:
    """The loss with X[idx[p]] = values[p], group by group in closed form (_norm.perturbed):
    a group is dense over its positions and channels, so coloring would need one pass per
    element of a group."""
    if name != "X":
        return None
    X, groups = cache["x"], cache["groups"]
    core, c = math.prod(X.shape[-cache["spatial"] - 1 :]), X.shape[-1]
    flat = np.arange(X.size)
    sets = flat // core * groups + flat % c // (c // groups)
    return _norm.perturbed(cache, g, idx, values, sets, core // groups)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """X[..., i, j, c] moves its own example's group: Y[..., :, :, c'] for c' in c's group;
    gamma[c] and beta[c] move Y[..., c]."""
    options = options or Options()
    sp, c = options.spatial, s["X"][-1]
    batch = s["X"][: -sp - 1]
    out = len(batch) + sp
    if name != "X":
        return _norm.param_footprint(out, c)
    width = c // options.groups
    lo = np.arange(c) // width * width
    return (*batch_maps(batch), *(None,) * sp, (out, lo, lo + width))


def explain(v: Any) -> Any:
    sp, g = v.options.spatial, v.options.groups
    pos = _norm.SPATIAL_INDEX[sp]
    each = f"per example and group g of C/groups = {v.shapes['X'][-1] // g} channels"
    return _norm.words(v, "X", "Y", each, (*pos, "c∈g"), pos)


SKELETON = """
def forward(X, gamma, beta, groups=2, eps=1e-5, spatial=2):
    # channels split into `groups` runs of C/groups; per example and group g:
    # mu = mean of X over the group's channels and every position, var = mean((X - mu)**2)
    # Xhat = (X - mu) / sqrt(var + eps);   Y = gamma * Xhat + beta   (gamma, beta per channel)
    # X ([N,] H, W, C), gamma (C,), beta (C,) -> Y of X's shape
    # (the leading batch axes optional: the default spec has none)
    raise NotImplementedError


def backward(grad_output, X, gamma, beta, groups=2, eps=1e-5, spatial=2):
    # dXhat = dY * gamma;   r = 1 / sqrt(var + eps) of the element's group
    # dX = r * (dXhat - mean(dXhat) - Xhat * mean(dXhat * Xhat))    (means per example and group)
    # dgamma = sum over examples and positions of dY * Xhat;   dbeta = the same sum of dY
    dY = grad_output
    raise NotImplementedError
    return {"X": ..., "gamma": ..., "beta": ...}
"""


def layout(s: Shapes, options: Any = None) -> tuple[tuple[TensorInfo, ...], TensorInfo]:
    sp = (options or Options()).spatial
    if sp == 2:
        return LAYER.tensors, LAYER.output
    axes, index = _core(sp), (*_norm.SPATIAL_INDEX[sp], "c")
    return (
        (TensorInfo("X", axes, index, "input", "input, channel-last"), *LAYER.tensors[1:]),
        TensorInfo("Y", axes, index, "output", LAYER.output.doc),
    )


def gn_param(options: Any, s: Shapes) -> tuple[int, dict[str, Any]]:
    """CS231n's G and gn_param, after the tensors: (x, gamma, beta, G, gn_param)."""
    o = options or Options()
    return o.groups, {"eps": o.eps}


def factors(s: Shapes, options: Any = None) -> list[tuple[float, str, str]]:
    """A group's channels C/groups and its elements, the count of its statistics' mean
    (Layer.factors; its spatial axes are the layer's means)."""
    options = options or Options()
    core = _core(options.spatial)
    c, g = s["X"][-1], options.groups
    if c % g or c // g < 2:
        return []
    n = c // g * math.prod(s["X"][-len(core) : -1])
    out = [
        (c / g, "scale:C/groups", f"multiplied by C/groups = {c // g} (the channels of a group)")
    ] + _norm.unbiased(n)
    if n != c // g:
        out.append((float(n), "scale:group", f"multiplied by {n}, the elements of a group (its "
                    "mean's 1/count left out)"))  # fmt: skip
    return out


LAYER = Layer(
    name="groupnorm",
    means=_norm.SPATIAL_INDEX[1] + _norm.SPATIAL_INDEX[2],
    factors=factors,
    summary="Y = gamma (X - mean_g X) / sqrt(var_g X + eps) + beta,  per example and group g",
    tensors=(
        TensorInfo("X", ("H", "W", "C"), ("i", "j", "c"), "input", "input image, channel-last"),
        TensorInfo("gamma", ("C",), ("c",), "weight", "scale per channel", init="ones"),
        TensorInfo("beta", ("C",), ("c",), "bias", "shift per channel", optional=True),
    ),
    output=TensorInfo("Y", ("H", "W", "C"), ("i", "j", "c"), "output", "normalized per group"),
    forward=forward,
    backward=backward,
    variants=variants,
    output_shape=output_shape,
    default_shapes={"X": (4, 5, 6), "gamma": (6,), "beta": (6,)},
    options=Options,
    footprint=footprint,
    working=working_elements,
    layout=layout,
    perturbed=perturbed,
    perturbed_elements=_norm.perturbed_elements,
    explain=explain,
    skeleton=SKELETON,
    cs231n=(
        Form("spatial_groupnorm_forward", "spatial_groupnorm_backward",
             {"X": NCHW, "gamma": CHANNELS, "beta": CHANNELS}, out(NCHW), gn_param,
             applies=lambda o: getattr(o, "spatial", 2) == 2,
             layout="X as (N, C, H, W), gamma and beta as (1, C, 1, 1)",
             hint="images (N, H, W, C) with spatial: 2"),
    ),  # fmt: skip
    forms=_norm.forms("groupnorm", forward),
)
