"""The constants a layer names: the factors a classic slip multiplies a gradient by.

A hint may say "divided by the batch size" only for a factor the layer has. The factors are
derived from the layer, not listed per case, so a new layer has them without code here:

- the sizes of the output's axes: a mean where the loss sums (1/batch, 1/outputs, a mean over
  some of them);
- the sizes of the gradient's own axes: times those the layer averages over (``Layer.means``,
  letters: a loss's N, batchnorm's statistics), its 1/size left out; divided by those the
  output does not keep (a loss's N D elements), a mean where the layer sums;
- the options' probabilities p in (0, 1), as p and 1 - p (dropout's keep probability), each
  multiplied or divided;
- the layer's own (``Layer.factors``: attention's 1/sqrt(d_k), a group's or a window's size);
- 2 and 1/2, and the sign; every factor also with the sign flipped.

A factor is (value, cause, words, over): ``over``, the letters of a mean over output axes
only, which explains nothing for a gradient that keeps one of them (db[c] divided by C).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.layers import Layer

Factor = tuple[float, str, str, frozenset]

MAX_AXES = 8  # subsets of at most this many letters (2^8 products): the hints stay cheap


def named(
    layer: Layer, shapes: Any, options: Any, name: str | None, out_shape: tuple[int, ...],
    upstream: Any = None,
) -> list[Factor]:
    """Every factor the layer names for gradient ``name`` (None: the output's alone);
    ``upstream``: the check's grad_output, whose value is a factor where it is one number."""
    out_info = layer.output_info(shapes, options)
    out_letters = letters(out_info.index, len(out_shape))
    nbatch = len(out_shape) - len(out_info.axes)
    found = [(-1.0, "sign", "the sign is flipped", frozenset())]
    # the layer's own first: where one of them equals a size (a 2x2 window's 4 at a batch of 4)
    # the layer's is the likelier slip (a max-pool has no mean over the batch to slip on)
    if layer.factors is not None:
        found += [(v, c, w, frozenset()) for v, c, w in layer.factors(shapes, options)]
    found += output_means(out_shape, out_letters, nbatch)
    if name is not None and name in shapes:
        info = layer.tensor(name, shapes, options)
        found += axis_sizes(tuple(shapes[name]), info, set(out_letters), set(layer.means))
    found += option_values(options)
    found += upstream_left_out(upstream)
    # the bare 2 only where nothing the layer names is 2 (avgpool's "divided by 2, one side of
    # the window" was followed by "or equally ... an extra factor 2": outside test t52b F4)
    named = {v for v, *_ in found}
    found += [f for f in ((2.0, "scale:2", "an extra factor 2", frozenset()),
                          (0.5, "scale:1/2", "a missing factor 2", frozenset()))
              if f[0] not in named]  # fmt: skip
    found += [(-v, f"{c} and sign", f"{w}, and the sign flipped", s) for v, c, w, s in found[1:]]
    return found


def letters(index: tuple[str, ...], ndim: int) -> list[str]:
    """The report's letter of each axis: b0, b1 ... for the batch axes in front of the layer's
    own (as the tables index a gradient)."""
    own = list(index) if len(index) <= ndim else []
    return [f"b{k}" for k in range(ndim - len(own))] + own


def output_means(out_shape: tuple[int, ...], letters: list[str], nbatch: int) -> list[Factor]:
    """1/(product of sizes) for every set of output axes (a mean where the loss sums), and the
    batch size."""
    out = []
    axes = [k for k, n in enumerate(out_shape) if n > 1]
    batch = [k for k in axes if k < nbatch]
    for r in range(1, min(len(axes), MAX_AXES) + 1):
        for subset in itertools.combinations(axes, r):
            n = math.prod(out_shape[k] for k in subset)
            names = ", ".join(letters[k] for k in subset)
            if list(subset) == batch:
                cause, words = (
                    "scale:1/batch",
                    f"divided by the batch size {n} (a mean over the batch where the loss sums)",
                )
            elif len(subset) == len(axes) or list(subset) == axes[:-1]:
                cause, words = (
                    "scale:mean",
                    f"divided by {n}, the number of outputs over {names} "
                    "(a mean where the loss sums)",
                )
            else:
                cause, words = (
                    f"scale:1/({names})",
                    f"divided by {n}, the size of {names} "
                    f"(a mean over {names} where the loss sums)",
                )
            # a mean over some axes only is a mean over axes the gradient sums (checked per
            # gradient); the batch's or all outputs' is the loss's own scale, for every gradient
            over = frozenset(letters[k] for k in subset) if cause.startswith("scale:1/(") else None
            out.append((1.0 / n, cause, words, over or frozenset()))
    if batch:
        n = math.prod(out_shape[k] for k in batch)
        out.append((float(n), "scale:batch", f"multiplied by the batch size {n}", frozenset()))
    return out


def axis_sizes(shape: tuple[int, ...], info: Any, kept: set[str], means: set[str]) -> list[Factor]:
    """The gradient's own axes: times the size of any set of those the layer averages over (its
    1/N left out: batchnorm's statistics over N, a loss's mean over its N examples), and divided
    by the size of a set the output does not keep (a mean where the layer sums: a loss's over
    its N D elements where its mean is over N). Sets of equal size are one factor naming each
    ("i or j")."""
    ltr = letters(info.index, len(shape))
    dims = ["" for _ in range(len(shape) - len(info.axes))] + list(info.axes)
    axes = [k for k, n in enumerate(shape) if n > 1][:MAX_AXES]
    by_value: dict[tuple[int, bool, bool], list[tuple[int, ...]]] = {}
    for r in range(1, len(axes) + 1):
        for subset in itertools.combinations(axes, r):
            n = math.prod(shape[k] for k in subset)
            averaged = all(ltr[k] in means for k in subset)
            kinds = [False] if averaged else []
            kinds += [True] if not any(ltr[k] in kept for k in subset) else []
            for divided in kinds:
                # divided by the size of axes the layer already averages over: its own 1/size
                # once more, not a mean where it sums (softmax's loss is a mean over n)
                sets = by_value.setdefault((n, divided, divided and averaged), [])
                if not sets or len(sets[0]) == len(subset):
                    sets.append(subset)
    out = []
    for (n, divided, twice), sets in by_value.items():
        names = " or ".join(", ".join(ltr[k] for k in s) for s in sets)
        size = " or ".join(" ".join(dims[k] for k in s) for s in sets if all(dims[k] for k in s))
        size = f" = {size}" if size else ""
        if twice:
            words = f"divided by {n}{size}, the size of {names}, once more than the layer's "
            words += f"own mean over {names} (its 1/{n} applied twice)"
        elif divided:
            words = f"divided by {n}{size}, the size of {names} (a mean over {names} where the "
            words += "layer sums)"
        else:
            words = f"multiplied by {n}{size}, the size of {names} (the layer's mean over "
            words += f"{names} taken as a sum: its 1/{n} left out)"
        cause = f"scale:{'1/' if divided else ''}({names}){':twice' if twice else ''}"
        out.append((1.0 / n if divided else float(n), cause, words, frozenset()))
    return out


def option_values(options: Any) -> list[Factor]:
    """The options' probabilities: a number p in (0, 1) as p and 1 - p (dropout's p and keep
    probability, leaky_relu's slope), each multiplied or divided, and each taken for the
    other. Integers (a stride, groups, a seed) are no scale of themselves: a layer names those
    it has (Layer.factors)."""
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        items = [(f.name, getattr(options, f.name)) for f in dataclasses.fields(options)]
    elif isinstance(options, Mapping):
        items = list(options.items())
    else:
        items = []
    out: list[Factor] = []
    none: frozenset = frozenset()

    def both(value: float, what: str, note: str = "") -> None:
        value_is = f"{what} = {value:.6g}{note}"
        out.append(
            (value, f"scale:{what}", f"multiplied by {value_is}: a 1/({what}) left out", none)
        )
        # the usual slip behind it is the factor forgotten (CS231n's L2 term without its
        # reg), not a division written: say that first (t24 F12)
        out.append((1 / value, f"scale:1/({what})",
                    f"a factor {value_is} missing, or a 1/({what}) too many",
                    none))  # fmt: skip

    for key, v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        if isinstance(v, float) and 0 < v < 1:
            both(v, f"{key}")
            both(1 - v, f"1 - {key}", f" ({key} = {v:.6g})")
            if abs(v - 0.5) > 1e-9:  # (at 0.5 the two are 1: no factor)
                # the one taken for the other: dropout scaled by 1/p where 1/(1 - p) belongs
                # (CS231n's p keeps, ours drops) was 'a constant factor this layer does not
                # name' (outside test t44a N2)
                out.append(((1 - v) / v, f"scale:1/{key} for 1/(1 - {key})",
                            f"1/{key} where 1/(1 - {key}) belongs ({key} = {v:.6g})", none))
                out.append((v / (1 - v), f"scale:1/(1 - {key}) for 1/{key}",
                            f"1/(1 - {key}) where 1/{key} belongs ({key} = {v:.6g})", none))
    return out


def upstream_left_out(upstream: Any) -> list[Factor]:
    """1/g for an upstream gradient that is one number g (a loss's grad_output, or one value
    everywhere) other than 0 and 1: a backward that never multiplies by it gives the right
    gradient divided by g (t24 F11: 'a constant factor this layer does not name')."""
    if upstream is None:
        return []
    g = np.asarray(upstream)
    if g.size == 0 or g.dtype.kind not in "fiu":
        return []
    v = float(g.flat[0])
    if not math.isfinite(v) or v == 0 or abs(v) == 1 or not np.all(g == g.flat[0]):
        return []
    what = "grad_output" if g.size == 1 else "the upstream gradient"
    value = f"{what} = {v:.6g}" + ("" if g.size == 1 else " everywhere")
    return [(1 / v, "upstream-left-out",
             f"{value} left out: the backward never multiplies by the upstream gradient",
             frozenset())]  # fmt: skip
