"""``gradcli explain``: a layer's forward and gradient formulas as plain text sections.

The seed notes' formulas in unicode math (their notation: x, W, b, z; X, W, b, Z channel-last;
Q, K, V, S, A), the variants the spec's options select, the spec's shapes substituted and one
line of intuition per gradient. Pure data: no rich and no printing here (only the render
modules style output), so the same sections serve the terminal and JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gradcli.inputs.spec import Spec
from gradcli.layers import _conv
from gradcli.layers.base import options_dict

XCORR = (
    "convolutions here are cross-correlations (the kernel slides unflipped), as in the seed "
    "notes and every DL framework"
)
BATCH_SUM = "parameter gradients are summed over the batch"
ROTATED = "the full convolution of the upstream gradient with the 180-degree-rotated kernel"
WHY = {  # one line of intuition per gradient, keyed "layer.tensor"
    "linear.W": "dW is the outer product of the upstream gradient and the input",
    "linear.b": "the bias adds straight into z, so its gradient is the upstream gradient itself",
    "linear.x": "the upstream gradient flows back through the transposed weights",
    "conv.w": "the kernel gradient correlates the input with the upstream gradient",
    "conv.x": f"the input gradient is {ROTATED}: each input collects every window that read it",
    "conv.x.strided": "the input gradient is a transposed convolution: each output's upstream "
    "gradient flows back through the kernel to the inputs its window read (stride 1, "
    f"dilation 1: {ROTATED})",
    "conv.b": "the bias gradient sums the upstream gradient over every position",
    "attention.W_O": "like a linear layer: the outer product of the heads and the upstream "
    "gradient, summed over positions",
    "attention.V": "each value row collects the upstream gradient of every query that attended "
    "to it, weighted by A",
    "attention.A": "∂L/∂A[i,j] is the upstream gradient of output row i dotted with value row j",
    "attention.S": "each row of dS is A ⊙ (dA − (dA·A) summed over the row): the softmax "
    "Jacobian diag(a) − a·aᵀ of that row applied to dA",
    "attention.Q": "a query moves only its own row of scores: dQ gathers the keys weighted by "
    "that row of dS, scaled as in the forward",
    "attention.K": "a key moves only its own column of scores: dK gathers the queries weighted "
    "by that column of dS, scaled as in the forward",
    "attention.W": "like a linear layer: the outer product of the input and the projection's "
    "gradient, summed over positions",
    "attention.X": "X reaches the loss along the Q, K and V paths; its gradient sums all three",
}


@dataclass(frozen=True)
class Section:
    """One titled block of explanation: ``forward``, ``dL/d<tensor>`` or ``shapes``."""

    title: str
    lines: list[str]


def _s(shape: Any) -> str:
    """A shape as Python writes it: (3, 4), (4,), ()."""
    return str(tuple(int(n) for n in shape))


def _ix(*parts: str | None) -> str:
    """An index list; the seed writes W[m,n,d,c] tight but X[i+m, j+n, d] spaced."""
    kept = [p for p in parts if p]
    return ("," if all(p.isidentifier() for p in kept) else ", ").join(kept)


def _sum(*idx: str | None) -> str:
    """Σ over the given indices: Σ_i, or Σ_{m,n,d} for several."""
    kept = [i for i in idx if i]
    return f"Σ_{kept[0]}" if len(kept) == 1 else "Σ_{" + ",".join(kept) + "}"


def _batch(spec: Spec) -> tuple[int, ...]:
    """The input's leading axes beyond its core axes: the batch."""
    for info in spec.layer.infos(spec.shapes):
        if info.role == "input" and info.name in spec.shapes:
            shape = spec.shapes[info.name]
            return tuple(shape[: len(shape) - len(info.axes)])
    return ()


def _assemble(
    spec: Spec,
    fwd: list[str],
    grads: dict[str, tuple[list[str], str]],
    out_axes: tuple,
    extra: list[str],
) -> list[Section]:
    """forward, one ``dL/dT`` section per gradient (lines, intuition), then the shapes."""
    batch, out, out_shape = _batch(spec), spec.output_info.name, spec.grad_output.shape
    secs = [Section("forward", fwd)]
    for name, (lines, why) in grads.items():
        if batch and name in spec.shapes and spec.info(name).role != "input":
            lines = [*lines, f"summed over the batch axes {_s(batch)}: {BATCH_SUM}"]
        secs.append(Section(f"dL/d{name}", [*lines, f"intuition: {why}"]))
    shapes = ["  ".join(f"{n}: {_s(s)}" for n, s in {**spec.shapes, out: out_shape}.items())]
    for info in spec.layer.infos(spec.shapes):
        if info.name in spec.shapes and info.axes:  # a user's layer names no axes
            axes = ("batch",) * (len(spec.shapes[info.name]) - len(info.axes)) + info.axes
            shapes.append(f"{info.name} {_s(spec.shapes[info.name])} = ({', '.join(axes)})")
    if out_axes:
        shapes.append(f"{out} {_s(out_shape)} = ({', '.join(('batch',) * len(batch) + out_axes)})")
    shapes.append(f"∂L/∂{out} {_s(out_shape)} is the upstream gradient; each ∂L/∂T has T's shape")
    if batch:
        shapes.append(f"batch axes {_s(batch)}, the leading axes of the input: every formula "
                      f"holds per example and {BATCH_SUM}")  # fmt: skip
    return [*secs, Section("shapes", shapes + extra)]


def _linear(spec: Spec) -> list[Section]:
    sh, over = spec.shapes, "Σ_batch " if _batch(spec) else ""
    fwd = [
        "z = W · x + b",
        f"z {_s(spec.grad_output.shape)} = W {_s(sh['W'])} · x {_s(sh['x'])} + b {_s(sh['b'])}",
    ]
    if over:  # a batch is stored as rows, so the matrix product runs the other way round
        fwd.append("for a batch of rows x: z = x · Wᵀ + b, one row per example")
    grads = {
        "W": ([f"∂L/∂W {_s(sh['W'])} = {over}∂L/∂z · xᵀ"], WHY["linear.W"]),
        "b": ([f"∂L/∂b {_s(sh['b'])} = {over}∂L/∂z"], WHY["linear.b"]),
        "x": ([f"∂L/∂x {_s(sh['x'])} = Wᵀ · ∂L/∂z"], WHY["linear.x"]),
    }
    return _assemble(spec, fwd, grads, ("out",), [])


def _conv1d_seed(spec: Spec) -> list[Section]:
    """The notes' own 1-based formulas, for the seed's case (no channels, no options)."""
    sh, m = spec.shapes, spec.grad_output.shape[-1]
    n, k = sh["x"][-1], sh["w"][0]
    fwd = ["z_i = Σ_{j=1}^{k} w_j · x_{i+j-1} + b,   i ∈ {1, …, m}", XCORR,
           "indices are 1-based as in the notes (gradcli's tables are 0-based)"]  # fmt: skip
    grads = {
        "b": ([f"∂L/∂b {_s(sh['b'])} = Σ_{{i=1}}^{{m}} δ_i,   δ = ∂L/∂z"], WHY["conv.b"]),
        "w": ([f"∂L/∂w {_s(sh['w'])} = x ⋆ δ   (a valid cross-correlation)",
               "∂L/∂w_j = Σ_{i=1}^{m} δ_i · x_{i+j-1},   j ∈ {1, …, k}"], WHY["conv.w"]),
        "x": ([f"∂L/∂x {_s(sh['x'])} = δ ∗ rot180(w)   (a full convolution)",
               "∂L/∂x_p = Σ_{i=max(1, p-k+1)}^{min(m, p)} δ_i · w_{p-i+1},   p ∈ {1, …, n}"],
              WHY["conv.x"]),
    }  # fmt: skip
    return _assemble(spec, fwd, grads, ("m",), [f"m = n - k + 1 = {n} - {k} + 1 = {m}"])


@dataclass(frozen=True)
class _Names:
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


def _convolution(spec: Spec, nm: _Names, geo: list[_conv.Axis]) -> list[Section]:
    """Forward and gradients of a channel-last convolution with stride, padding, dilation."""
    sh = spec.shapes
    strided, dilated = any(g.s != 1 for g in geo), any(g.d != 1 for g in geo)
    padded = any(g.lo or g.hi for g in geo)
    src = nm.x + "p" if padded else nm.x  # the seed's Xp: X zero-padded
    plus = " + " if strided or dilated else "+"
    reads = [(f"{o}·s{x}" if strided else o) + plus + (f"{t}·d{x}" if dilated else t)
             for o, t, x in zip(nm.out, nm.taps, nm.sfx, strict=True)]  # fmt: skip
    w_ix, up = f"{nm.w}[{_ix(*nm.taps, nm.cin, nm.cout)}]", f"{nm.dz}[{_ix(*nm.out, nm.cout)}]"
    b = f"b[{nm.cout}]" if nm.cout else "b"
    fwd = [f"{nm.z}[{_ix(*nm.out, nm.cout)}] = {_sum(*nm.taps, nm.cin)} {w_ix} · "
           f"{src}[{_ix(*reads, nm.cin)}] + {b}", XCORR]  # fmt: skip
    if spec.layer.name == "conv1d":
        fwd.append("indices are 0-based (the notes' z_i = Σ_j w_j · x_{i+j-1} + b is 1-based)")

    def per_axis(sym: str, val: Any) -> str:
        return ", ".join(f"{sym}{x} = {val(g)}" for x, g in zip(nm.sfx, geo, strict=True))

    if strided:
        fwd.append(f"stride {per_axis('s', lambda g: g.s)}: the window moves s steps per output")
    if dilated:
        fwd.append(f"dilation {per_axis('d', lambda g: g.d)}: the kernel taps are d apart")
    if padded:
        same = (
            " ('same': the output keeps the input's size)" if spec.options.padding == "same" else ""
        )
        pads = per_axis("p", lambda g: g.lo if g.lo == g.hi else (g.lo, g.hi))
        fwd.append(f"padding {pads}{same}: {src} = {nm.x} zero-padded on both sides")
    geom = [
        f"{o} = ⌊({n} + pad - d·({k} - 1) - 1) / s⌋ + 1 = ⌊({g.n} + {g.lo + g.hi} - "
        f"{g.d}·({g.k} - 1) - 1) / {g.s}⌋ + 1 = {g.out}" if strided or dilated or padded
        else f"{o} = {n} - {k} + 1 = {g.n} - {g.k} + 1 = {g.out}"
        for g, (n, k, o) in zip(geo, nm.sizes, strict=True)
    ]  # fmt: skip
    dw = [f"∂L/∂{nm.w} {_s(sh[nm.w])} = {src} ⋆ {nm.dz}   (a valid cross-correlation)",
          f"∂L/∂{w_ix} = {_sum(*nm.out)} {up} · {src}[{_ix(*reads, nm.cin)}]"]  # fmt: skip
    if strided or dilated:  # no single convolution formula: scatter each window back
        dx = [f"∂L/∂{nm.x} {_s(sh[nm.x])} = the transposed convolution of {nm.dz} with {nm.w}",
              f"∂L/∂{src}[{_ix(*reads, nm.cin)}] += {_sum(nm.cout) + ' ' if nm.cout else ''}"
              f"{up} · {w_ix}   for every {', '.join((*nm.out, *nm.taps))}"]  # fmt: skip
    else:
        back = [f"{p}-{t}" for p, t in zip(nm.pos, nm.taps, strict=True)]
        dx = [f"∂L/∂{nm.x} {_s(sh[nm.x])} = {nm.dz} ∗ rot180({nm.w})   (a full convolution)",
              f"∂L/∂{src}[{_ix(*nm.pos, nm.cin)}] = {_sum(*nm.taps, nm.cout)} "
              f"{nm.dz}[{_ix(*back, nm.cout)}] · {w_ix}   (0 outside {nm.z})"]  # fmt: skip
    if padded:  # the padding is constant zeros: its share of the gradient goes nowhere
        cut = ", ".join(f"{g.lo}:{g.lo + g.n}" for g in geo) + (", :" if nm.cin else "")
        dx.append(f"∂L/∂{nm.x} = ∂L/∂{src}[{cut}]   (the padded gradient cut back to {nm.x})")
    bsum = f"{nm.dz}[{_ix(*nm.out, ':' if nm.cout else None)}]"
    bc = [f"∂L/∂b[{nm.cout}] = {_sum(*nm.out)} {up}"] if nm.cout else []  # the seed's form
    grads = {
        nm.w: (dw, WHY["conv.w"]),
        nm.x: (dx, WHY["conv.x.strided" if strided or dilated else "conv.x"]),
        "b": ([f"∂L/∂b {_s(sh['b'])} = {_sum(*nm.out)} {bsum}", *bc],
              WHY["conv.b"] + (" (per output channel)" if nm.cout else "")),
    }  # fmt: skip
    return _assemble(spec, fwd, grads, spec.output_info.axes, geom)


def _conv1d(spec: Spec) -> list[Section]:
    sh, o = spec.shapes, spec.options
    ch = len(sh["w"]) == 3
    if not ch and o.stride == 1 and o.padding in (0, "valid") and o.dilation == 1:
        return _conv1d_seed(spec)
    nm = _Names("x", "w", "z", "δ", ("i",), ("j",), ("p",), "e" if ch else None,
                "c" if ch else None, ("",), (("n", "k", "m"),))  # fmt: skip
    n = sh["x"][-2] if ch else sh["x"][-1]
    return _convolution(spec, nm, _conv.geometry(o, (n,), (sh["w"][0],)))


def _conv2d(spec: Spec) -> list[Section]:
    X, W = spec.shapes["X"], spec.shapes["W"]
    nm = _Names("X", "W", "Z", "∂L/∂Z", ("i", "j"), ("m", "n"), ("i", "j"), "d", "c",
                ("_h", "_w"), (("H", "kh", "Ho"), ("W", "kw", "Wo")))  # fmt: skip
    return _convolution(spec, nm, _conv.geometry(spec.options, tuple(X[-3:-1]), tuple(W[:2])))


def _attention(spec: Spec) -> list[Section]:
    sh, o = spec.shapes, spec.options
    X, h, W_O = sh["X"], o.heads, sh.get("W_O")
    lead, T, d_k, d_v = tuple(X[:-2]), X[-2], sh["W_Q"][1], sh["W_V"][1]
    head = (h,) if h > 1 else ()  # intermediates carry a head axis with several heads
    Q, V = _s((*lead, *head, T, d_k // h)), _s((*lead, *head, T, d_v // h))
    S, H = _s((*lead, *head, T, T)), _s((*lead, T, d_v))
    a = "_a" if h > 1 else ""  # per-head subscript
    sq = "√(d_k/h)" if h > 1 else "√d_k"
    scale, root = f"(1/{sq})", f"{sq},   {sq} = √{d_k // h} = {math.sqrt(d_k // h):.4g}"
    fwd = ["Attention(Q, K, V) = softmax(Q · Kᵀ / √d_k) · V",
           f"Q {_s((*lead, T, d_k))} = X · W_Q,   K = X · W_K,   V {H} = X · W_V"]  # fmt: skip
    if h > 1:
        fwd.append(f"heads h = {h}: Q, K, V split by columns into Q_a {Q}, K_a, V_a {V}, "
                   f"a = 1 … {h}; each head is scaled by 1/{sq}")  # fmt: skip
    fwd.append(f"S{a} {S} = Q{a} · K{a}ᵀ / {root}   (the pre-softmax scores)")
    if o.causal:
        fwd.append("causal mask: S[i,j] = -∞ for j > i, so A[i,j] = 0 there (i sees only j ≤ i)")
    fwd.append(f"A{a} {S} = softmax(S{a})   (row-wise attention weights)")
    if h > 1:
        fwd.append(f"H {H} = concat(A_1 · V_1, …, A_{h} · V_{h})   (the heads side by side)")
        fwd += [] if W_O else [f"out {H} = H"]
    else:
        fwd.append(f"{'H' if W_O else 'out'} {H} = A · V")
    if W_O:
        fwd.append(f"out {_s(spec.grad_output.shape)} = concat(heads) · W_O = H · W_O")
    G = "∂L/∂H_a" if h > 1 else "∂L/∂H" if W_O else "∂L/∂out"  # what reaches A · V
    grads: dict[str, tuple[list[str], str]] = {}
    if W_O:
        grads["W_O"] = ([f"∂L/∂W_O {_s(W_O)} = Hᵀ · ∂L/∂out",
                         f"∂L/∂H {H} = ∂L/∂out · W_Oᵀ   (passed into the heads)"],
                        WHY["attention.W_O"])  # fmt: skip
    split = [f"∂L/∂H_a = head a's columns of ∂L/∂{'H' if W_O else 'out'}"] if h > 1 else []
    mask = ["masked entries have A = 0, so ∂L/∂S = 0 there: no gradient crosses the mask"]
    grads.update({
        "V": ([f"∂L/∂V{a} {V} = A{a}ᵀ · {G}", *split], WHY["attention.V"]),
        "A": ([f"∂L/∂A{a} {S} = {G} · V{a}ᵀ"], WHY["attention.A"]),
        "S": ([f"∂L/∂S{a} {S} = A{a} ⊙ (∂L/∂A{a} - rowsum(∂L/∂A{a} ⊙ A{a}))",
               *(mask if o.causal else [])], WHY["attention.S"]),
        "Q": ([f"∂L/∂Q{a} {Q} = {scale} · ∂L/∂S{a} · K{a}"], WHY["attention.Q"]),
        "K": ([f"∂L/∂K{a} {Q} = {scale} · ∂L/∂S{a}ᵀ · Q{a}"], WHY["attention.K"]),
    })  # fmt: skip
    cat = "∂L/∂{0} = concat(∂L/∂{0}_a): each head's gradient goes back to its own columns"
    for name, P in (("W_Q", "Q"), ("W_K", "K"), ("W_V", "V")):
        heads = [cat.format(P)] if h > 1 else []
        grads[name] = (heads + [f"∂L/∂{name} {_s(sh[name])} = Xᵀ · ∂L/∂{P}"], WHY["attention.W"])
    grads["X"] = ([f"∂L/∂X {_s(X)} = ∂L/∂Q · W_Qᵀ + ∂L/∂K · W_Kᵀ + ∂L/∂V · W_Vᵀ",
                   "(the seed notes stop at the weights; X feeds all three projections)"],
                  WHY["attention.X"])  # fmt: skip
    return _assemble(spec, fwd, grads, ("T", "d_out" if W_O else "d_v"), [])


def _generic(spec: Spec) -> list[Section]:
    """A layer the notes do not cover (e.g. a user's): its summary and each gradient's shape."""
    grads = {n: ([f"∂L/∂{n} {_s(s)}"], "no formula in the notes") for n, s in spec.shapes.items()}
    return _assemble(spec, [spec.layer.summary], grads, spec.output_info.axes, [])


_BUILDERS = {"linear": _linear, "conv1d": _conv1d, "conv2d": _conv2d, "attention": _attention}


def explain(spec: Spec) -> list[Section]:
    """The forward, one section per gradient and the shapes of ``spec``'s layer, as text."""
    sections = _BUILDERS.get(spec.layer.name, _generic)(spec)
    inter, name = spec.layer.intermediates, spec.layer.name
    if inter:  # a student's derivation goes through them: say they can be checked one by one
        d = ", ".join("d" + n for n in inter)
        sections.append(Section("checking your intermediates", [
            f"your {d} can be checked too, each against finite differences of the forward "
            "from that intermediate on (upstream held fixed)",
            f"gradcli compute {name} -o mine.npz   writes ours, with the tensors' gradients, "
            "to start an answer file from",
            f"gradcli check {name} --grads mine.npz   (.npz or YAML keyed {d}; one .npy with "
            f"--wrt {inter[-2]}); an --impl backward may return them too",
        ]))  # fmt: skip
    return sections


def custom() -> list[Section]:
    """``explain custom`` with no module yet: what a layer of your own is and how it is checked."""
    return [
        Section("a layer of your own", [
            "a module with forward(**tensors, **options) -> output and "
            "backward(grad_output, **tensors, **options) -> {tensor name: gradient}",
            "the tensors and options are the ones your spec names under tensors: and options:",
            "intuition: gradcli differentiates your forward numerically and holds your backward "
            "to it, element by element, plus the backward's contract (zero upstream, "
            "determinism, linearity, dtype, no writes)",
        ]),
        Section("start", [
            "gradcli init custom -o my.yaml            a spec that runs with the skeleton below",
            "gradcli init custom --impl -o my_custom.py   a skeleton module to fill in",
            "gradcli check custom my.yaml --impl my_custom.py",
            "gradcli explain custom my.yaml --impl my_custom.py   your layer's tensors and "
            "gradient shapes",
        ]),
    ]  # fmt: skip


def custom_doc() -> dict[str, Any]:
    return {
        "layer": "custom",
        "options": {},
        "sections": [{"title": s.title, "lines": list(s.lines)} for s in custom()],
    }


def explain_doc(spec: Spec) -> dict[str, Any]:
    """``explain`` as a JSON-ready mapping: layer, non-default options and the sections."""
    return {
        "layer": spec.layer.name,
        "options": options_dict(spec.options),
        "sections": [{"title": s.title, "lines": list(s.lines)} for s in explain(spec)],
    }
