"""One step of an LSTM, CS231n's lstm_step_forward (gate order i, f, o, g).

Shapes: x (..., D), prev_h (..., H), prev_c (..., H), Wx (D, 4H), Wh (H, 4H), b (4H,); ``...``
are batch axes (the three inputs' broadcast together). The step has two results, next_h and
next_c; a layer has one output, so they are stacked on a new axis before the last:
out (..., 2, H) with out[..., 0, :] = next_h and out[..., 1, :] = next_c. Its upstream gradient
is likewise [dnext_h, dnext_c], exactly what CS231n's lstm_step_backward takes, so both paths
into the cell state are checked (next_h alone would leave dnext_c's path unchecked).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers import _recurrent, _slips
from gradcli.layers.base import Arrays, AxisMap, Footprint, Layer, Shapes, TensorInfo, same
from gradcli.layers.cs231n import ROWS, Form, lstm_out
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s


def sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a)) written through tanh: no overflow for large |a|, complex-safe."""
    return 0.5 * (1 + np.tanh(0.5 * a))


# a = x Wx + prev_h Wh + b = [a_i, a_f, a_o, a_g] (H each)
# i = sigmoid(a_i)  f = sigmoid(a_f)  o = sigmoid(a_o)  g = tanh(a_g)
# next_c = f * prev_c + i * g   next_h = o * tanh(next_c)   out = [next_h, next_c]
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., D), prev_h (..., H), prev_c (..., H), Wx (..., D, 4H), Wh (..., H, 4H),
    b (..., 4H) -> out (..., 2, H)."""
    x, h, c, Wx, Wh = t["x"], t["prev_h"], t["prev_c"], t["Wx"], t["Wh"]
    a = _recurrent.affine(x, h, Wx, Wh, t["b"])
    H = a.shape[-1] // 4
    i, f, o = (sigmoid(a[..., k * H : (k + 1) * H]) for k in range(3))
    g = np.tanh(a[..., 3 * H :])
    next_c = f * c + i * g
    tc = np.tanh(next_c)
    out = np.stack(np.broadcast_arrays(o * tc, next_c), axis=-2)
    cache = {"x": x, "prev_h": h, "prev_c": c, "Wx": Wx, "Wh": Wh}
    cache.update(i=i, f=f, o=o, g=g, tc=tc)
    return out, cache


def shown(cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """The gates i, f, o, g and tanh_c = tanh(next_c), each (..., H): what compute shows."""
    return {**{k: cache[k] for k in ("i", "f", "o", "g")}, "tanh_c": cache["tc"]}


def forms(t: Arrays, options: Any = None) -> dict[str, tuple[str, np.ndarray]]:
    """A forward reading a's blocks in another gate order (torch's nn.LSTM: i, f, g, o): ours
    with the columns of Wx, Wh and b reordered to match."""
    H = np.shape(t["Wx"])[-1] // 4
    out = {}
    for order in itertools.permutations(GATES):
        if "".join(order) == GATES:
            continue
        # our gate G's block is where their order puts it
        cols = np.concatenate([np.arange(k * H, (k + 1) * H)
                               for k in (order.index(gate) for gate in GATES)])  # fmt: skip
        moved = {**t, **{n: np.asarray(t[n])[..., cols] for n in ("Wx", "Wh", "b")}}
        torch = " (torch's nn.LSTM order)" if "".join(order) == "ifgo" else ""
        out["".join(order)] = (
            f"your forward reads a's blocks as the gates {', '.join(order)}{torch}, where "
            f"lstm_step takes {', '.join(GATES)} (CS231n's order): reorder the blocks of Wx, Wh "
            f"and b, or check yours as a custom layer", forward(moved)[0])
    return out


# dnext_h = dout[..., 0, :]   dnext_c = dout[..., 1, :]
# do = dnext_h * tanh(next_c)   dc = dnext_c + dnext_h * o * (1 - tanh(next_c)^2)
# df = dc * prev_c   di = dc * g   dg = dc * i   dprev_c = dc * f
# da = [di i (1 - i), df f (1 - f), do o (1 - o), dg (1 - g^2)]
# dWx = x^T da   dWh = prev_h^T da   db = sum da   dx = da Wx^T   dprev_h = da Wh^T
def backward(dout: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dout (..., 2, H) -> {"x": (..., D), "prev_h": (..., H), "prev_c": (..., H),
    "Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)}."""
    return _grads(dout, cache)


GATES = "ifog"  # CS231n's order of the blocks of a, da and the columns of Wx, Wh, b


def _grads(
    dout: np.ndarray, cache: dict[str, Any], slip: dict[str, Any] | None = None,
    d_from: str = GATES, local_from: str = GATES, forget: bool = True, untanhed: bool = False,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The gradients with block k of da = d<d_from[k]> * <local_from[k]>'s derivative, and a
    local derivative (``slip``: {gate or "c": factor}) put in place of the right one, and
    dprev_c = dc * f (without ``forget``: dc), do = dnext_h * next_c (``untanhed``): the right
    backward by default, the diagnosis's variants otherwise."""
    i, f, o, g, tc, c = (cache[k] for k in ("i", "f", "o", "g", "tc", "prev_c"))
    dh, dnc = dout[..., 0, :], dout[..., 1, :]
    local = {"i": i * (1 - i), "f": f * (1 - f), "o": o * (1 - o), "g": 1 - g**2, "c": 1 - tc**2}
    local.update(slip or {})
    dc = dnc + dh * o * local["c"]
    d = {"i": dc * g, "f": dc * c, "o": dh * (f * c + i * g if untanhed else tc), "g": dc * i}
    blocks = [d[a] * local[b] for a, b in zip(d_from, local_from, strict=True)]
    da = np.concatenate(np.broadcast_arrays(*blocks), axis=-1)
    grads = _recurrent.affine_backward(da, cache["x"], cache["prev_h"], cache["Wx"], cache["Wh"])
    return {
        "x": grads["x"],
        "prev_h": grads["h"],
        "prev_c": _recurrent.unbroadcast(dc * f if forget else dc + 0 * f, c.shape),
        "Wx": grads["Wx"],
        "Wh": grads["Wh"],
        "b": grads["b"],
    }


D_OF = {"i": "dc * g", "f": "dc * prev_c", "o": "dnext_h * tanh(next_c)", "g": "dc * i"}
DC = "dc = dnext_c + dnext_h * o * (1 - tanh(next_c)^2)"


def variants(t: Arrays, options: Any, dout: np.ndarray) -> dict[str, tuple[str, dict]]:
    """The classic slips, for the diagnosis: a gate's or the cell's tanh derivative slipped
    (layers/_slips.py), two gates' gradients or two blocks of da exchanged, dc without its
    path through next_h, dprev_c without the forget gate."""
    cache = forward(t)[1]
    out: dict[str, tuple[str, dict]] = {}

    def add(cause: str, text: str, **how: Any) -> None:
        out[f"lstm_step:{cause}"] = (text, _grads(dout, cache, **how))

    a = _recurrent.affine(t["x"], t["prev_h"], t["Wx"], t["Wh"], t["b"])
    H = a.shape[-1] // 4
    for n, k in enumerate(GATES):
        pre = {f"a_{k}": a[..., n * H : (n + 1) * H]}  # the derivative at the pre-activation
        slips = _slips.tanh(cache[k], k, pre) if k == "g" else _slips.sigmoid(cache[k], k, pre)
        right = "(1 - g^2)" if k == "g" else f"{k} (1 - {k})"
        for key, used, why, factor in slips:
            add(f"{key}:{k}", f"with da_{k} = {_slips.times('d' + k, used)} where da_{k} = "
                f"d{k} * {right} belongs: {why}", slip={k: factor})  # fmt: skip
    tc, c = cache["tc"], cache["prev_c"]
    nc = cache["f"] * c + cache["i"] * cache["g"]
    for key, used, why, factor in _slips.tanh(tc, "tanh(next_c)", {"next_c": nc}):
        add(f"{key}:tanh(next_c)", f"with dc = dnext_c + {_slips.times('dnext_h * o', used)} "
            f"where {DC} belongs: {why}", slip={"c": factor})  # fmt: skip
    add("dc-without-next_h", f"with dc = dnext_c where {DC} belongs: the path from next_h to "
        "the cell left out", slip={"c": np.zeros_like(tc)})  # fmt: skip
    add("do-without-tanh", "with do = dnext_h * next_c where do = dnext_h * tanh(next_c) "
        "belongs: the o gate's columns (j = 2H ... 3H - 1 of Wx, Wh and b) take the cell "
        "itself, not its tanh (next_h = o * tanh(next_c))", untanhed=True)  # fmt: skip
    add("dprev_c-without-f", "with dprev_c = dc where dprev_c = dc * f belongs: the forget "
        "gate left out (next_c = f * prev_c + i * g)", forget=False)  # fmt: skip
    for a, b in itertools.combinations(GATES, 2):
        swapped = GATES.translate(str.maketrans(a + b, b + a))
        add(f"gates-swapped:{a},{b}", f"with d{a} and d{b} exchanged (d{a} = {D_OF[b]} and "
            f"d{b} = {D_OF[a]}, where d{a} = {D_OF[a]} and d{b} = {D_OF[b]} belong)",
            d_from=swapped)  # fmt: skip
        add(f"blocks-swapped:{a},{b}", f"with the blocks da_{a} and da_{b} exchanged in da = "
            "[da_i, da_f, da_o, da_g] (the columns of Wx, Wh and b are in the gate order i, "
            "f, o, g)", d_from=swapped, local_from=swapped)  # fmt: skip
    # three or four gates moved at once (a cycle, two pairs): another order written out
    for order in itertools.permutations(GATES):
        if sum(x != y for x, y in zip(order, GATES, strict=True)) < 3:
            continue  # the order itself, or one pair exchanged (above)
        moved = "".join(order)
        said = ", ".join(f"da_{k}" for k in moved)
        add(f"blocks-permuted:{','.join(moved)}", f"with the blocks of da in the order "
            f"[{said}] where [da_i, da_f, da_o, da_g] belongs (the columns of Wx, Wh and b "
            "are in the gate order i, f, o, g)", d_from=moved, local_from=moved)  # fmt: skip
        add(f"gates-permuted:{','.join(moved)}", "with the gates' gradients moved: "
            + ", ".join(f"d{k} = {D_OF[m]}" for k, m in zip(GATES, moved, strict=True))
            + " (each where another gate's belongs)", d_from=moved)  # fmt: skip
    return out


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    batch = _recurrent.check_shapes("lstm_step", s, "x", "prev_h", gates=4)
    c, H = s["prev_c"], s["prev_h"][-1]
    if len(c) < 1 or c[-1] != H:
        raise ShapeError(
            f"lstm_step: prev_c must have shape [..., {H}] like prev_h, got {list(c)}",
            key="prev_c",
        )
    try:
        batch = np.broadcast_shapes(batch, c[:-1])
    except ValueError:
        raise ShapeError(
            f"lstm_step: the batch axes of prev_c {list(c[:-1])} do not broadcast with those "
            f"of x and prev_h {list(batch)}",
            key="prev_c",
        ) from None
    return (*batch, 2, H)


def _batch(s: Shapes) -> tuple[int, ...]:
    return np.broadcast_shapes(s["x"][:-1], s["prev_h"][:-1], s["prev_c"][:-1])


def working_elements(s: Shapes, options: Any = None) -> int:
    """The pre-activations and their gradient (4H each), the gates and tanh(next_c)."""
    batch, H = _batch(s), s["prev_h"][-1]
    return _recurrent.working(batch, 4 * H) + 5 * int(np.prod(batch)) * H


def _unit(axis: int, n: int, H: int) -> AxisMap:
    """Column j of a (., 4H) gate block moves unit j mod H of next_h and next_c."""
    u = np.arange(n) % H
    return (axis, u, u + 1)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., d] and prev_h[..., k] move every unit of their own example; prev_c[..., k] moves
    unit k of next_h and next_c; a weight's or bias's column j moves unit j mod H."""
    batch, H = _batch(s), s["prev_h"][-1]
    nb = len(batch)
    if name in ("x", "prev_h"):
        return (*_recurrent.input_maps(s[name][:-1], batch), None)
    if name == "prev_c":
        return (*_recurrent.input_maps(s[name][:-1], batch), same(nb + 1, H))
    return {
        "Wx": (None, _unit(nb + 1, 4 * H, H)),
        "Wh": (None, _unit(nb + 1, 4 * H, H)),
        "b": (_unit(nb + 1, 4 * H, H),),
    }[name]


def explain(v: Shown) -> Formulas:
    sh, over = v.shapes, "Σ_batch " if v.batch else ""
    fwd = [
        "a = x · Wx + prev_h · Wh + b = [a_i, a_f, a_o, a_g]   (H columns each)",
        "i = σ(a_i)   f = σ(a_f)   o = σ(a_o)   g = tanh(a_g)",
        "next_c = f ⊙ prev_c + i ⊙ g,   next_h = o ⊙ tanh(next_c)",
        f"out {_s(v.out_shape)}: out[..., 0, :] = next_h,  out[..., 1, :] = next_c",
        "∂L/∂next_h = ∂L/∂out[..., 0, :],   ∂L/∂next_c = ∂L/∂out[..., 1, :]",
        "dc = ∂L/∂next_c + ∂L/∂next_h ⊙ o ⊙ (1 - tanh²(next_c))   (both paths)",
        "∂L/∂a = [dc ⊙ g ⊙ i(1-i),  dc ⊙ prev_c ⊙ f(1-f),",
        "         ∂L/∂next_h ⊙ tanh(next_c) ⊙ o(1-o),  dc ⊙ i ⊙ (1-g²)]",
    ]
    return Formulas(fwd, {
        "x": ([f"∂L/∂x {_s(sh['x'])} = ∂L/∂a · Wxᵀ"],
              "all four gates' pre-activation gradients flow back through the input weights"),
        "prev_h": ([f"∂L/∂prev_h {_s(sh['prev_h'])} = ∂L/∂a · Whᵀ"],
                   "likewise through the recurrent weights, to the previous step"),
        "prev_c": ([f"∂L/∂prev_c {_s(sh['prev_c'])} = dc ⊙ f"],
                   "the cell's gradient passes back scaled by the forget gate alone, no matrix"),
        "Wx": ([f"∂L/∂Wx {_s(sh['Wx'])} = {over}xᵀ · ∂L/∂a"],
               "one input feature against each gate column's pre-activation gradient"),
        "Wh": ([f"∂L/∂Wh {_s(sh['Wh'])} = {over}prev_hᵀ · ∂L/∂a"],
               "as for Wx, with the previous hidden state"),
        "b": ([f"∂L/∂b {_s(sh['b'])} = {over}∂L/∂a"],
              "the biases add straight into a"),
    }, ("2", "H"))  # fmt: skip


SKELETON = """
def forward(x, prev_h, prev_c, Wx, Wh, b):
    # a = x Wx + prev_h Wh + b = [a_i, a_f, a_o, a_g]          (CS231n's gate order)
    # i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o)   g = tanh(a_g)
    # next_c = f * prev_c + i * g   next_h = o * tanh(next_c)
    # x (N, D), prev_h (N, H), prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,)
    # -> np.stack([next_h, next_c], axis=-2), (N, 2, H)
    raise NotImplementedError


def backward(grad_output, x, prev_h, prev_c, Wx, Wh, b):
    # dnext_h, dnext_c = grad_output[..., 0, :], grad_output[..., 1, :]
    # dc = dnext_c + dnext_h * o * (1 - tanh(next_c)**2)    dprev_c = dc * f
    # da = [dc g i(1-i), dc prev_c f(1-f), dnext_h tanh(next_c) o(1-o), dc i (1-g^2)]
    # dx = da Wx^T   dprev_h = da Wh^T   dWx = x^T da   dWh = prev_h^T da   db = sum_N da
    raise NotImplementedError
    return {"x": ..., "prev_h": ..., "prev_c": ...,
            "Wx": ..., "Wh": ..., "b": ...}
"""


LAYER = Layer(
    name="lstm_step",
    shown=shown,
    summary="out = [next_h, next_c]: next_c = f*prev_c + i*g, next_h = o*tanh(next_c)",
    tensors=(
        TensorInfo("x", ("D",), ("d",), "input", "input at this time step"),
        TensorInfo("prev_h", ("H",), ("k",), "input", "hidden state of the previous step"),
        TensorInfo("prev_c", ("H",), ("u",), "input", "cell state of the previous step"),
        TensorInfo("Wx", ("D", "4H"), ("d", "j"), "weight", "input-to-gates weights (i, f, o, g)"),
        TensorInfo("Wh", ("H", "4H"), ("k", "j"), "weight", "hidden-to-gates weights (i, f, o, g)"),
        TensorInfo("b", ("4H",), ("j",), "bias", "gate biases (i, f, o, g)", optional=True),
    ),
    output=TensorInfo(
        "out", ("2", "H"), ("s", "u"), "output", "next_h (out[..., 0, :]), next_c (out[..., 1, :])"
    ),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={
        "x": (3, 4), "prev_h": (3, 5), "prev_c": (3, 5), "Wx": (4, 20), "Wh": (5, 20), "b": (20,),
    },  # fmt: skip
    footprint=footprint,
    working=working_elements,
    explain=explain,
    skeleton=SKELETON,
    variants=variants,
    forms=forms,
    stacked=("s", ("next_h", "next_c")),
    blocks=("j", tuple(GATES), "the {block} gate's block of d{tensor} (j = {lo} to {hi}, "
            "da_{block}'s columns): look at how the backward computes da_{block}"),
    cs231n=(
        Form("lstm_step_forward", "lstm_step_backward",
             {"x": ROWS, "prev_h": ROWS, "prev_c": ROWS}, lstm_out(), outputs=2,
             batch=("x", "prev_h", "prev_c"), hint="x (N, D), prev_h and prev_c (N, H)",
             layout="their next_h, next_c are out[..., 0, :], out[..., 1, :]"),
    ),  # fmt: skip
)
