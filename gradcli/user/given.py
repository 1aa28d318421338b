"""The user's layer as the Python API is given it: a path ``"mylayer.py[:NAME]"`` (what
``--impl`` takes), a module, an object or a class holding ``forward`` and ``backward``, or the
``forward=``/``backward=`` callables; each becomes one :class:`Impl`, and a call that gives it
twice over (an object and ``forward=``) is refused rather than one half silently ignored."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import OptionError
from gradcli.user.impl import Impl, instance, load_impl


def is_path(layer: Any) -> bool:
    return isinstance(layer, Path) or (
        isinstance(layer, str) and (layer.endswith(".py") or ".py:" in layer)
    )


def is_name(layer: Any) -> bool:
    return isinstance(layer, str) and not is_path(layer)


def runs_user_code(layer: Any, forward: Any, backward: Any) -> bool:
    """Whether the check runs the caller's code (as ``--impl``) rather than a built-in's."""
    return forward is not None or backward is not None or not (layer is None or is_name(layer))


def impl_of(layer: Any, forward: Any, backward: Any, param: str = "layer",
            forward_only: bool = False) -> Impl | None:  # fmt: skip
    """The user's functions: ``forward=``/``backward=`` callables, or an object or module
    holding both (what ``--impl FILE.py[:NAME]`` accepts; a class is made with no arguments),
    or a path to such a file; ``forward_only``: a backward is not needed (answers are
    checked)."""
    given = forward is not None or backward is not None
    if given and not (layer is None or is_name(layer)):
        raise OptionError(
            "give your layer once: an object (or file) holding forward and backward, or the "
            "forward= and backward= keywords, not both",
            param=param,
        )
    if is_path(layer):
        return load_impl(str(layer), param=param, forward_only=forward_only)
    if not given:
        if layer is None or isinstance(layer, str):
            return None
        if inspect.isclass(layer):
            holder = layer.__name__
            layer = instance(layer, Path(f"<{holder}>"), holder, param)
        forward, backward = getattr(layer, "forward", None), getattr(layer, "backward", None)
        holder = getattr(layer, "__name__", type(layer).__name__)
        if inspect.ismodule(layer) and not callable(forward) and not callable(backward):
            # a student's module of CS231n functions (relu_forward, relu_backward), found by
            # the layer's CS231n names once it is known, as a file of them is
            module = layer
            where = Path(getattr(module, "__file__", None) or f"<{module.__name__}>")

            def lookup(name: str) -> Any:
                f = getattr(module, name, None)
                return f if callable(f) else None

            return Impl(where, None, None, lookup=lookup)
        if not callable(forward) and not callable(backward):
            raise OptionError(
                f"expected a layer name, a path FILE.py[:NAME], or an object with forward and "
                f"backward, got {type(layer).__name__}",
                param=param,
            )
    else:
        holder = ""
    # forward= alone: one loss function, (loss, dx); or, answers checked, a forward
    single = (given or forward_only) and backward is None
    for what, fn in (("forward", forward), ("backward", backward)):
        if single and what == "backward":
            continue
        if not callable(fn):
            raise OptionError(
                f"expected a callable, got {type(fn).__name__}",
                param=what if given else f"{param}.{what}",
            )
    try:
        path = Path(inspect.getsourcefile(forward) or f"<{holder or 'forward'}>")
    except TypeError:  # a builtin or a C function
        path = Path(f"<{holder or 'forward'}>")
    if single and not forward_only and isinstance(forward, np.ufunc):
        # (read as a loss, it was called as one, and its wrapper's TypeError blamed np.tanh:
        # outside test t44b N1)
        raise OptionError(
            f"forward=np.{forward.__name__} alone is read as one loss function returning (loss, "
            f"dx), which a NumPy ufunc is not: give backward= too (backward(grad_output, x))",
            param="backward",
        )
    forward = _positional(forward)
    if single:
        name = getattr(forward, "__name__", "forward")
        return Impl(path, forward, None, labels=(name, name))
    return Impl(path, forward, backward, "" if inspect.ismodule(layer) else holder)


def _positional(fn: Any) -> Any:
    """``fn``, or for a NumPy ufunc (``forward=np.tanh``), which takes no keywords, a forward
    that gives it the tensors by position, in the order they were given."""
    if not isinstance(fn, np.ufunc):
        return fn

    def forward(**tensors: Any) -> Any:
        return fn(*tensors.values())

    forward.__name__ = forward.__qualname__ = fn.__name__
    return forward
