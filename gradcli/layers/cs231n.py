"""How CS231n's assignments write a layer (their layers.py and rnn_layers.py), so that a
student's file is checked as it is written. A layer declares its forms (``Layer.cs231n``):

- the function names a student's file holds: a pair ``affine_forward(x, w, b) -> (out, cache)``
  and ``affine_backward(dout, cache) -> (dx, dw, db)``, or one loss function
  ``softmax_loss(x, y) -> (loss, dx)``;
- how gradcli's tensors become their arguments and their results come back: their layout
  (every example a row of ``(N, D)``, ``w`` as ``(D, M)``, images as ``(N, C, H, W)``), their
  param dicts (``conv_param``, ``bn_param``), their several outputs (``next_h, next_c``);
- in words, how their layout differs from gradcli's: said on the check's first line, never
  applied silently.

The user stage (gradcli/user/cs231n.py) calls the student's functions through these records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from types import MappingProxyType
from typing import Any

import numpy as np

from gradcli.errors import OptionError
from gradcli.records import record

Arrays = Mapping[str, np.ndarray]
Shapes = Mapping[str, tuple[int, ...]]


@record
class Arg:
    """One tensor as their code takes it: ``to`` maps gradcli's array to theirs, ``back`` maps
    their array of that layout (a gradient) back to gradcli's, given gradcli's shape.

    ``axes`` is the transpose ``back`` applies to their array before any reshape to gradcli's
    shape (None: a reshape alone), so that a message can spell the numpy call that fixes an
    array saved in their layout (``call``); ``label`` is their layout in CS231n's letters."""

    to: Callable[[np.ndarray], np.ndarray]
    back: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]
    axes: tuple[int, ...] | None = None
    label: str = ""

    def called(self, label: str) -> Arg:
        """The same Arg in a layer's own letters (linear's w = Wᵀ as "(D, M)")."""
        return Arg(self.to, self.back, self.axes, label)

    def theirs(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape their code gives an array of gradcli's ``shape``."""
        return tuple(np.shape(self.to(np.empty(shape))))

    def call(self, shape: tuple[int, ...]) -> str:
        """The numpy call that turns an array in their layout into gradcli's of ``shape``:
        ``.transpose(0, 2, 3, 1)``, ``.T``, ``.reshape(4)`` ("" where both are the same)."""
        now, text = self.theirs(shape), ""
        if self.axes is not None and len(self.axes) == len(now):
            text = (".T" if self.axes == (1, 0) else
                    f".transpose({', '.join(map(str, self.axes))})")  # fmt: skip
            now = tuple(now[k] for k in self.axes)
        if now != tuple(shape):
            text += f".reshape({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"
        return text

    def ours(self, theirs: tuple[int, ...]) -> tuple[int, ...] | None:
        """gradcli's shape of an array their code takes as ``theirs``, where their layout is a
        transpose of gradcli's (None: no transpose, or not of this rank)."""
        if self.axes is None or len(self.axes) != len(theirs):
            return None
        shape = tuple(theirs[k] for k in self.axes)
        return shape if self.theirs(shape) == tuple(theirs) else None


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _nchw(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, *a.shape[-3:]).transpose(0, 3, 1, 2)


def _nhwc(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a.transpose(0, 2, 3, 1).reshape(shape)


SAME = Arg(lambda a: a, lambda a, shape: a)
# every example a row: (..., D) -> (N, D), the batch axes flattened into N
ROWS = Arg(_rows, lambda a, shape: a.reshape(shape), label="(N, ...), one row per example")
T = Arg(lambda a: a.T, lambda a, shape: a.T, (1, 0), "transposed")
# images: (..., H, W, C) -> (N, C, H, W)
NCHW = Arg(_nchw, _nhwc, (0, 2, 3, 1), "(N, C, H, W)")
# per channel, broadcast over images: (C,) -> (1, C, 1, 1) (CS231n's groupnorm's gamma, beta)
CHANNELS = Arg(lambda a: a.reshape(1, -1, 1, 1), lambda a, shape: a.reshape(shape),
               label="(1, C, 1, 1)")  # fmt: skip
# word indices (..., T) as (N, T), and their vectors (..., T, D) as (N, T, D)
SEQ = Arg(lambda a: a.reshape(-1, *a.shape[-2:]) if a.ndim > 1 else a.reshape(1, 1, -1),
          lambda a, shape: a.reshape(shape), label="(N, T, ...)")  # fmt: skip
FILTERS = Arg(lambda a: a.transpose(3, 2, 0, 1), lambda a, shape: a.transpose(2, 3, 1, 0),
              (2, 3, 1, 0), "(F, C, HH, WW)")  # fmt: skip


@record
class Out:
    """The output: ``split`` maps gradcli's upstream gradient to their ``dout`` arguments (one
    per output of theirs), ``join`` maps their outputs back to gradcli's one output."""

    split: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    join: Callable[[tuple[np.ndarray, ...], tuple[int, ...]], np.ndarray]


def out(arg: Arg) -> Out:
    return Out(lambda g: (arg.to(g),), lambda outs, shape: arg.back(outs[0], shape))


@record
class Form:
    """One way CS231n writes a layer."""

    forward: str  # the function's name: "affine_forward", "softmax_loss"
    backward: str | None = None  # None: one function returning (loss, dx)
    args: Mapping[str, Arg] = field(default_factory=lambda: MappingProxyType({}))  # else SAME
    out: Out = field(default_factory=lambda: out(SAME))
    # options -> their trailing arguments (conv_param ...); raises OptionError naming the
    # option their code cannot take
    params: Callable[[Any, Shapes], tuple[Any, ...]] | None = None
    # tensors their code takes with exactly this many axes (a layer that mixes its batch: its
    # leading axes cannot be flattened into N)
    ndim: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # tensors their code takes with one N between them (an RNN step's x and prev_h): the same
    # batch axes, where gradcli would broadcast one initial state over the batch
    batch: tuple[str, ...] = ()
    applies: Callable[[Any], bool] = lambda options: True  # batchnorm: spatial 0 or 2
    layout: str = ""  # how their layout differs from gradcli's, in words ("" the same)
    # the output their forward is compared with, when ours cannot be reproduced exactly
    # (dropout's mask, drawn by their own generator): (tensors, options, theirs) -> (expected,
    # what makes theirs implausible beyond its values, or "")
    expected: Callable[[Arrays, Any, np.ndarray], tuple[np.ndarray, str]] | None = None
    hint: str = ""  # what to check when their code does not fit (said in its error)

    outputs: int = 1  # lstm_step_forward: (next_h, next_c, cache)

    def arg(self, name: str) -> Arg:
        return self.args.get(name, SAME)

    @property
    def names(self) -> str:
        return f"{self.forward} and {self.backward}" if self.backward else self.forward


def lstm_out() -> Out:
    """lstm_step's output stacks [next_h, next_c] on its axis -2; theirs are two (N, H)."""

    def join(outs: tuple[np.ndarray, ...], shape: tuple[int, ...]) -> np.ndarray:
        each = shape[:-2] + shape[-1:]
        return np.stack([o.reshape(each) for o in outs], axis=-2)

    return Out(lambda g: (_rows(g[..., 0, :]), _rows(g[..., 1, :])), join)


def one(option: str, values: tuple[int, ...], fn: str, param: str) -> int:
    """A pair option as CS231n's single number (their stride and pad are the same on both
    axes); a pair of two values is refused, naming the option."""
    if len(set(values)) != 1:
        raise OptionError(
            f"CS231n's {fn} takes one {param} for both axes; this spec's {option} is "
            f"{list(values)}",
            key=f"options.{option}",
        )
    return values[0]


def refuse(option: str, value: Any, fn: str, why: str) -> None:
    raise OptionError(f"CS231n's {fn} {why}; this spec's {option} is {value!r}",
                      key=f"options.{option}")  # fmt: skip


# ---------------------------------------------------------------- their layout, recognised
# An array or a spec in CS231n's layout where gradcli's belongs is named as such, with the numpy
# call that turns it into gradcli's; gradcli never converts it silently (the user fixes it).


def _ours_words(layer: Any, name: str, shapes: Shapes | None, options: Any) -> str:
    """gradcli's layout of tensor ``name`` in its own letters: ``X (..., H, W, C_in)``."""
    info = layer.tensor(name, shapes, options)
    return f"{name} (..., {', '.join(info.axes)})" if info.role == "input" else (
        f"{name} {info.shape_str}")  # fmt: skip


def _theirs(arg: Arg, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return arg.theirs(shape)
    except (ValueError, IndexError):  # a shape their code could not take at all
        return None


def answer_layout(
    layer: Any, options: Any, name: str, ours: tuple[int, ...], given: tuple[int, ...]
) -> tuple[Form, Arg] | None:
    """The form whose layout gives tensor ``name`` (gradcli's shape ``ours``) the shape
    ``given`` of an answer, where the two differ."""
    ours, given = tuple(ours), tuple(given)
    if given == ours:
        return None
    for form in getattr(layer, "cs231n", ()):
        arg = form.arg(name)
        if arg.label and form.applies(options) and _theirs(arg, ours) == given:
            return form, arg
    return None


def answer_words(
    layer: Any, options: Any, name: str, ours: tuple[int, ...], given: tuple[int, ...],
    key: str, shapes: Shapes | None = None, verb: str = "save",
) -> str:  # fmt: skip
    """Why an answer for ``name`` has shape ``given``, where that is CS231n's layout of it
    ("" where it is not): ``[2, 3, 5, 5] is dX in CS231n's layout (N, C, H, W), as
    conv_backward_naive returns it, where gradcli's is X (..., H, W, C_in); gradcli converts
    nothing: save dX.transpose(0, 2, 3, 1)``."""
    found = answer_layout(layer, options, name, ours, given)
    if found is None:
        return ""
    return f"{list(given)} is {key} " + in_their_layout(
        layer, options, name, tuple(ours), key, *found, shapes=shapes, verb=verb)


def in_their_layout(
    layer: Any, options: Any, name: str, ours: tuple[int, ...], key: str, form: Form, arg: Arg,
    *, shapes: Shapes | None = None, verb: str = "save",
) -> str:  # fmt: skip
    """``in CS231n's layout (N, C, H, W), as conv_backward_naive returns it, where gradcli's is
    X (..., H, W, C_in); gradcli converts nothing: save dX.transpose(0, 2, 3, 1)``."""
    by = f", as {form.backward} returns it" if form.backward else ""
    return (f"in CS231n's layout {arg.label}{by}, where gradcli's is "
            f"{_ours_words(layer, name, shapes, options)}; gradcli converts nothing: {verb} "
            f"{key}{arg.call(ours)}")  # fmt: skip


def transposed_forms(layer: Any, options: Any, name: str) -> list[tuple[Form, Arg]]:
    """The forms (at ``options``) whose layout of tensor ``name`` is a transpose of gradcli's:
    where the shapes agree (a square conv), an answer in their layout is still told apart by
    its values."""
    out = []
    for form in getattr(layer, "cs231n", ()):
        arg = form.arg(name)
        if arg.axes is not None and arg.label and form.applies(options):
            out.append((form, arg))
    return out


def answer_call(layer: Any, options: Any, name: str, ours: tuple[int, ...],
                given: tuple[int, ...], key: str) -> str:  # fmt: skip
    """Only the numpy call for an answer in CS231n's layout (``dW.transpose(2, 3, 1, 0)``)."""
    found = answer_layout(layer, options, name, ours, given)
    return f"{key}{found[1].call(tuple(ours))}" if found else ""


def spec_layout(layer: Any, shapes: Shapes, options: Any) -> tuple[str, str, str] | None:
    """Spec shapes that fail the layer's shape check but pass it read back through one of
    its forms (every tensor their layout transposes, moved together): (what they are in
    CS231n's words, gradcli's layout in its own, the numpy calls with the shapes they give),
    e.g. ``("X as (N, C, H, W), W as (F, C, HH, WW)", "X (..., H, W, C_in), W (kh, kw, C_in,
    C_out)", "X.transpose(0, 2, 3, 1) of shape [2, 8, 8, 3], W.transpose(2, 3, 1, 0) of shape
    [3, 3, 3, 4]")``.
    None where no form reads them so."""
    for form in getattr(layer, "cs231n", ()):
        try:
            if not form.applies(options):
                continue
        except Exception:  # noqa: BLE001 - options this form cannot read: not its layout
            continue
        moved = {}
        for n, s in shapes.items():
            back = form.arg(n).ours(tuple(s))
            if back is not None and back != tuple(s):
                moved[n] = back
        if not moved:
            continue
        candidate = {**shapes, **moved}
        try:
            layer.output_shape(candidate, layer.resolve_options(options, candidate))
        except Exception:  # noqa: BLE001 - read so, the shapes fit no better: not their layout
            continue
        theirs = ", ".join(f"{n} as {form.arg(n).label}" for n in moved)
        ours = ", ".join(_ours_words(layer, n, candidate, options) for n in moved)
        calls = ", ".join(f"{n}{form.arg(n).call(moved[n])} of shape {list(moved[n])}"
                          for n in moved)  # fmt: skip
        return theirs, ours, calls
    return None
