"""Embedding lookup: row idx of a table W, for every index.

Shapes: idx (...) integers 0 ... V-1 (role index: never perturbed, no gradient), W (V, D),
out (..., D). Every axis of idx is a batch axis: its core is a single index.
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
    as_indices,
    batch_maps,
    same,
)
from gradcli.layers.cs231n import ROWS, SEQ, Form, out
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s


# out[..., d] = W[idx[...], d]
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """idx (...) integers, W (..., V, D) -> out (..., D)."""
    idx, W = as_indices(t["idx"]), t["W"]
    if W.ndim == 2:
        out = W[idx]
    else:  # W carries probe axes: they broadcast with idx's axes, right-aligned
        lead = np.broadcast_shapes(idx.shape, W.shape[:-2])
        rows = np.broadcast_to(idx, lead)[..., None, None]
        out = np.take_along_axis(np.broadcast_to(W, lead + W.shape[-2:]), rows, axis=-2)[..., 0, :]
    return out, {"idx": idx, "V": W.shape[-2]}


# dL/dW[v, d] = sum over the positions p with idx[p] = v of dL/dout[p, d]   (0 for unused rows)
def backward(dout: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dout (..., D) -> {"W": (V, D)}; idx has no gradient."""
    D = dout.shape[-1]
    dW = np.zeros((cache["V"], D), dtype=dout.dtype)
    np.add.at(dW, cache["idx"].ravel(), dout.reshape(-1, D))  # repeated indices accumulate
    return {"W": dW}


def variants(t: Arrays, options: Any, dout: np.ndarray) -> dict[str, tuple[str, dict]]:
    """The classic scatter that drops repeats: ``dW[idx] += dout`` (or ``=``) on a fancy index
    writes a repeated row once, so that row holds one position's upstream gradient, not their
    sum (numpy writes the positions in order: the last one stays; a loop that skips rows it has
    seen keeps the first)."""
    idx = as_indices(t["idx"]).ravel()
    D = dout.shape[-1]
    rows = np.asarray(dout, dtype=np.float64).reshape(-1, D)
    last = np.zeros((t["W"].shape[-2], D))
    last[idx] = rows  # numpy's own fancy assignment: the slip itself
    first = np.zeros_like(last)
    first[idx[::-1]] = rows[::-1]
    fix = "np.add.at(dW, idx, dout) adds them all"
    return {
        "embedding:repeats-dropped": (
            "with dW[idx] = dout (or dW[idx] += dout on a fancy index): a row whose index "
            f"repeats in idx holds the upstream gradient of its last position only, not the sum "
            f"over its positions ({fix})",
            {"W": last},
        ),
        "embedding:repeats-dropped:first": (
            "with each row written once, from the first position that looks it up: a row whose "
            f"index repeats in idx misses the upstream gradient of its later positions ({fix})",
            {"W": first},
        ),
    }


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    if len(s["W"]) != 2:
        raise ShapeError(f"embedding: W must be 2-D (V, D), got shape {list(s['W'])}", key="W")
    return (*s["idx"], s["W"][1])


def check_values(t: Arrays, options: Any = None) -> None:
    """Every index a row of W: 0 <= idx < V."""
    idx, V = np.asarray(t["idx"]), t["W"].shape[0]
    bad = np.argwhere((idx < 0) | (idx >= V))
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise ShapeError(
            f"index idx{list(at)} = {int(idx[at])} is not a row of W (expected 0 ... {V - 1})",
            key="idx",
        )


def working_elements(s: Shapes, options: Any = None) -> int:
    """The gathered rows (output-sized) and dW's accumulator."""
    return math.prod(s["idx"]) * s["W"][1] + math.prod(s["W"])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """W[v, d] moves out[..., d] at the positions that look row v up (any of them)."""
    nb = len(s["idx"])
    return {"W": (None, same(nb, s["W"][1])), "idx": batch_maps(tuple(s["idx"]))}[name]


def sources(name: str, t: Arrays, options: Any = None) -> np.ndarray | None:
    """out[p, d] reads W[idx[p], d] alone: any rows may move in one pass, whichever positions
    look them up (the footprint above cannot say which: that depends on idx's values)."""
    if name != "W":
        return None
    D = t["W"].shape[-1]
    return as_indices(t["idx"])[..., None] * D + np.arange(D)


def explain(v: Shown) -> Formulas:
    sh = v.shapes
    V, D = sh["W"]
    return Formulas(
        ["out[p, d] = W[idx[p], d]   (a row lookup per position p)",
         f"out {_s(v.out_shape)} = W {_s(sh['W'])}[idx {_s(sh['idx'])}]; "
         f"idx holds integers 0 ... {V - 1}, not differentiated"],
        {"W": ([f"∂L/∂W {_s(sh['W'])}: ∂L/∂W[v, d] = Σ_{{p : idx[p] = v}} ∂L/∂out[p, d]"],
               "a scatter-add: each position adds its upstream row into the row it looked up; "
               "a repeated index accumulates, an unused row stays 0")},
        ("D",),
    )  # fmt: skip


SKELETON = """
def forward(idx, W):
    # out[..., :] = W[idx[...], :]       idx (...) integers in [0, V), W (V, D) -> (..., D)
    raise NotImplementedError


def backward(grad_output, idx, W):
    # dW = zeros (V, D); dW[idx[p]] += grad_output[p] for every position p
    # (np.add.at: a plain dW[idx] += ... loses repeated indices)       idx: no gradient
    raise NotImplementedError
    return {"W": ...}
"""


LAYER = Layer(
    name="embedding",
    summary="out = W[idx]",
    tensors=(
        TensorInfo("idx", (), (), "index", "integer indices 0 ... V-1", classes="V"),
        TensorInfo("W", ("V", "D"), ("v", "d"), "weight", "embedding table, one row per index"),
    ),
    output=TensorInfo("out", ("D",), ("d",), "output", "the looked-up rows"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"idx": (4,), "W": (5, 3)},
    footprint=footprint,
    sources=sources,
    working=working_elements,
    check_values=check_values,
    variants=variants,
    explain=explain,
    skeleton=SKELETON,
    cs231n=(
        Form("word_embedding_forward", "word_embedding_backward", {"idx": ROWS}, out(SEQ),
             layout="idx as x (N, T)"),
    ),  # fmt: skip
)
