"""The words of the convolutions (conv1d and conv2d): their explain formulas, channel-last
with stride, padding and dilation, in the seed's symbols."""

from __future__ import annotations

from typing import Any

from gradcli.layers._conv import Axis
from gradcli.layers.words import XCORR, Formulas, Shown, ix, shape, sigma
from gradcli.records import record

ROTATED = ("the full cross-correlation of the upstream gradient with the 180-degree-rotated "
           "kernel, that is a true (flipping) full convolution with the kernel as it is")
WHY = {  # one line of intuition per gradient
    "w": "the kernel gradient correlates the input with the upstream gradient",
    "x": f"the input gradient is {ROTATED}: each input collects every window that read it",
    "x.strided": "the input gradient is a transposed convolution: each output's upstream "
    "gradient flows back through the kernel to the inputs its window read (at stride 1 "
    f"and dilation 1 it would be {ROTATED})",
    "b": "the bias gradient sums the upstream gradient over every position",
}


@record
class ConvNames:
    """The symbols and index letters of one convolution, as the seed writes them."""

    x: str  # input, kernel, output and upstream-gradient symbols
    w: str
    z: str
    dz: str
    out: tuple[str, ...]  # output indices, kernel tap indices, input indices (per axis)
    taps: tuple[str, ...]
    pos: tuple[str, ...]
    cin: str | None  # channel indices; None in conv1d's seed form
    cout: str | None
    sfx: tuple[str, ...]  # per-axis suffix of s, d, p: ("",) or ("_h", "_w")
    sizes: tuple[tuple[str, str, str], ...]  # (input, kernel, output) size names per axis


def convolution(
    v: Shown, nm: ConvNames, geo: list[Axis], out_axes: tuple[str, ...], seed_1based: bool
) -> Formulas:
    """Forward and gradients of a channel-last convolution with stride, padding, dilation."""
    sh = v.shapes
    strided, dilated = any(g.s != 1 for g in geo), any(g.d != 1 for g in geo)
    padded = any(g.lo or g.hi for g in geo)
    src = nm.x + "p" if padded else nm.x  # the seed's Xp: X zero-padded
    plus = " + " if strided or dilated else "+"
    reads = [(f"{o}·s{x}" if strided else o) + plus + (f"{t}·d{x}" if dilated else t)
             for o, t, x in zip(nm.out, nm.taps, nm.sfx, strict=True)]  # fmt: skip
    w_ix, up = f"{nm.w}[{ix(*nm.taps, nm.cin, nm.cout)}]", f"{nm.dz}[{ix(*nm.out, nm.cout)}]"
    b = f"b[{nm.cout}]" if nm.cout else "b"
    fwd = [f"{nm.z}[{ix(*nm.out, nm.cout)}] = {sigma(*nm.taps, nm.cin)} {w_ix} · "
           f"{src}[{ix(*reads, nm.cin)}] + {b}", XCORR]  # fmt: skip
    if seed_1based:
        fwd.append("indices are 0-based (the textbook's z_i = Σ_j w_j · x_{i+j-1} + b is 1-based)")

    def per_axis(sym: str, val: Any) -> str:
        return ", ".join(f"{sym}{x} = {val(g)}" for x, g in zip(nm.sfx, geo, strict=True))

    if strided:
        fwd.append(f"stride {per_axis('s', lambda g: g.s)}: the window moves s steps per output")
    if dilated:
        fwd.append(f"dilation {per_axis('d', lambda g: g.d)}: the kernel taps are d apart")
    if padded:
        same = (
            " ('same': the output keeps the input's size)" if v.options.padding == "same" else ""
        )
        pads = per_axis("p", lambda g: g.lo if g.lo == g.hi else (g.lo, g.hi))
        fwd.append(f"padding {pads}{same}: {src} = {nm.x} zero-padded on both sides")
    # the padding in the symbols the forward line names (p_h = 1): "pad" was named nowhere
    # (outside test t59a F6)
    def both(g: Any, x: str) -> str:
        return f"2·p{x}" if g.lo == g.hi else f"p{x}(before) + p{x}(after)"

    geom = [
        f"{o} = ⌊({n} + {both(g, x)} - d·({k} - 1) - 1) / s⌋ + 1 = ⌊({g.n} + {g.lo + g.hi} - "
        f"{g.d}·({g.k} - 1) - 1) / {g.s}⌋ + 1 = {g.out}" if strided or dilated or padded
        else f"{o} = {n} - {k} + 1 = {g.n} - {g.k} + 1 = {g.out}"
        for g, x, (n, k, o) in zip(geo, nm.sfx, nm.sizes, strict=True)
    ]  # fmt: skip
    dw = [f"∂L/∂{nm.w} {shape(sh[nm.w])} = {src} ⋆ {nm.dz}   (a valid cross-correlation)",
          f"∂L/∂{w_ix} = {sigma(*nm.out)} {up} · {src}[{ix(*reads, nm.cin)}]"]  # fmt: skip
    if strided or dilated:  # no single convolution formula: scatter each window back
        dx = [f"∂L/∂{nm.x} {shape(sh[nm.x])} = the transposed convolution of {nm.dz} with {nm.w}",
              f"∂L/∂{src}[{ix(*reads, nm.cin)}] += {sigma(nm.cout) + ' ' if nm.cout else ''}"
              f"{up} · {w_ix}   for every {', '.join((*nm.out, *nm.taps))}"]  # fmt: skip
    else:
        back = [f"{p}-{t}" for p, t in zip(nm.pos, nm.taps, strict=True)]
        dx = [f"∂L/∂{nm.x} {shape(sh[nm.x])} = {nm.dz} ⋆ rot180({nm.w})   "
              "(a full cross-correlation)",
              f"∂L/∂{src}[{ix(*nm.pos, nm.cin)}] = {sigma(*nm.taps, nm.cout)} "
              f"{nm.dz}[{ix(*back, nm.cout)}] · {w_ix}   (0 outside {nm.z})"]  # fmt: skip
    if padded:  # the padding is constant zeros: its share of the gradient goes nowhere
        cut = ", ".join(f"{g.lo}:{g.lo + g.n}" for g in geo) + (", :" if nm.cin else "")
        dx.append(f"∂L/∂{nm.x} = ∂L/∂{src}[{cut}]   (the padded gradient cut back to {nm.x})")
    bsum = f"{nm.dz}[{ix(*nm.out, ':' if nm.cout else None)}]"
    bc = [f"∂L/∂b[{nm.cout}] = {sigma(*nm.out)} {up}"] if nm.cout else []  # the seed's form
    grads = {
        nm.w: (dw, WHY["w"]),
        nm.x: (dx, WHY["x.strided" if strided or dilated else "x"]),
        "b": ([f"∂L/∂b {shape(sh['b'])} = {sigma(*nm.out)} {bsum}", *bc],
              WHY["b"] + (" (per output channel)" if nm.cout else "")),
    }  # fmt: skip
    return Formulas(fwd, grads, out_axes, geom)
