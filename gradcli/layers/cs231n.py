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
    their array of that layout (a gradient) back to gradcli's, given gradcli's shape."""

    to: Callable[[np.ndarray], np.ndarray]
    back: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _nchw(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, *a.shape[-3:]).transpose(0, 3, 1, 2)


def _nhwc(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a.transpose(0, 2, 3, 1).reshape(shape)


SAME = Arg(lambda a: a, lambda a, shape: a)
# every example a row: (..., D) -> (N, D), the batch axes flattened into N
ROWS = Arg(_rows, lambda a, shape: a.reshape(shape))
T = Arg(lambda a: a.T, lambda a, shape: a.T)
NCHW = Arg(_nchw, _nhwc)  # images: (..., H, W, C) -> (N, C, H, W)
# per channel, broadcast over images: (C,) -> (1, C, 1, 1) (CS231n's groupnorm's gamma, beta)
CHANNELS = Arg(lambda a: a.reshape(1, -1, 1, 1), lambda a, shape: a.reshape(shape))
# word indices (..., T) as (N, T), and their vectors (..., T, D) as (N, T, D)
SEQ = Arg(lambda a: a.reshape(-1, *a.shape[-2:]) if a.ndim > 1 else a.reshape(1, 1, -1),
          lambda a, shape: a.reshape(shape))  # fmt: skip
FILTERS = Arg(lambda a: a.transpose(3, 2, 0, 1), lambda a, shape: a.transpose(2, 3, 1, 0))


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
