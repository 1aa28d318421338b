"""The CS231n convention most student code uses, accepted for a user's layer (``--impl``, the
Python API, a network's ``impl:``) beside gradcli's own keywords-and-dict one:

    def affine_forward(x, w, b): ...          # -> (out, cache)
    def affine_backward(dout, cache): ...     # -> (dx, dw, db), in the tensors' order
    def softmax_loss(x, y): ...               # -> (loss, dx): one function, a loss

Which form a file is, is settled before anything runs, and never by trying:

- a pair named ``forward``/``backward`` is CS231n's when the backward takes exactly one plain
  parameter per output of theirs plus the cache, the cache's not named after a tensor
  (``backward(dout, cache)``); gradcli's backward takes ``grad_output`` and the tensors by name;
- a pair found by CS231n's names (each built-in layer declares them, gradcli/layers/cs231n.py:
  ``affine_forward``, ``conv_forward_naive`` ...), or named ``FILE.py:NAME_forward`` (or
  ``FILE.py:NAME``, for NAME_forward and NAME_backward), is CS231n's;
- one function alone (``FILE.py:NAME``, or ``forward=`` without ``backward=``) is a loss.

Read as CS231n, a forward that does not return ``(out, cache)`` and a backward that does not
return one gradient per tensor are refused, naming the convention, so a misreading cannot pass.
A built-in layer's declared form brings CS231n's layout (examples as rows of (N, D), ``w`` as
(D, M), images as (N, C, H, W)) and param dicts (``conv_param``, ``bn_param``); the check's
first line says so. Without one, tensors go by position in gradcli's layout, options as
keywords.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import UserCodeError, printable
from gradcli.layers.base import Layer, options_dict
from gradcli.layers.cs231n import Form
from gradcli.records import record
from gradcli.user import result
from gradcli.user.labels import as_data
from gradcli.user.readonly import read_only_call

CONVENTION = "the CS231n convention: forward(x, w, ...) -> (out, cache), backward(dout, cache)"
ACCEPTED = (
    "forward(**tensors) with backward(grad_output, **tensors); forward(x, w, ...) -> "
    "(out, cache) with backward(dout, cache); or FILE.py:NAME for an object holding them, "
    "NAME_forward with NAME_backward (CS231n's affine_forward ...), or one loss function "
    "NAME(x, y) -> (loss, dx)"
)


def detect(backward: Callable[..., Any], tensors: tuple[str, ...], outputs: int = 1) -> bool:
    """Whether ``backward`` is written as ``backward(dout, cache)`` (``outputs`` douts)."""
    try:
        params = list(inspect.signature(backward).parameters.values())
    except (TypeError, ValueError):  # a C function: no signature to read
        return False
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return (
        len(params) == outputs + 1
        and all(p.kind in plain for p in params)
        and params[-1].name not in tensors
    )


def pair_names(name: str, has: Callable[[str], bool]) -> tuple[str, str] | None:
    """FILE.py:NAME as a pair: ``FWD,BWD`` spelled out, NAME a forward whose name with
    ``backward`` for ``forward`` is there too (conv_forward_naive), or NAME_forward and
    NAME_backward (affine)."""
    if "," in name:
        fwd, _, bwd = name.partition(",")
        return fwd.strip(), bwd.strip()
    if "forward" in name and has(name.replace("forward", "backward")):
        return name, name.replace("forward", "backward")
    if has(f"{name}_forward") and has(f"{name}_backward"):
        return f"{name}_forward", f"{name}_backward"
    return None


def declared(
    base: Layer | None, options: Any, has: Callable[[str], bool], path: Path
) -> Form | None:
    """The layer's CS231n form whose functions the file defines, for these options (a student's
    layers.py holds batchnorm_forward and spatial_batchnorm_forward: the options choose)."""
    forms = base.cs231n if base else ()
    present = [f for f in forms if has(f.forward) and (f.backward is None or has(f.backward))]
    fits = [f for f in present if f.applies(options)]
    if len(fits) > 1:
        raise UserCodeError(
            f"defines {' and '.join(f.names for f in fits)}, each CS231n's "
            f"{base.name if base else ''}: name one ({printable(path.name)}:{fits[0].forward})",
            source=str(path),
        )
    if fits:
        return fits[0]
    if present:  # the layer's forms are there, but not for these options
        missing(base, options, present, has, path)
        unfit(base, options, path)
    half = [f for f in forms if has(f.forward) and f.backward and not has(f.backward)]
    if half:
        raise UserCodeError(f"defines {half[0].forward} but no {half[0].backward}(...)",
                            source=str(path))  # fmt: skip
    return None


def for_options(base: Layer | None, options: Any, single: bool, path: Path) -> Form | None:
    """The layer's form for functions the user named (FILE.py:NAME, forward=): the first one of
    that kind (a pair or one loss function) the options fit."""
    kind = [f for f in (base.cs231n if base else ()) if (f.backward is None) == single]
    for f in kind:
        if f.applies(options):
            return f
    if kind:
        unfit(base, options, path)
    return None


def missing(
    base: Any, options: Any, present: list[Form], has: Callable[[str], bool], path: Path
) -> None:
    """The form for these options exists but the file lacks its functions (a student's
    layers.py before the spatial part: batchnorm_forward, no spatial_batchnorm_forward): say
    which, not that the options are unsupported (the outside tester's M1)."""
    wanted = [f for f in base.cs231n if f.applies(options)]
    if not wanted:
        return
    f = wanted[0]
    lacks = [n for n in (f.forward, f.backward) if n and not has(n)]
    opts = ", ".join(f"{k}: {v}" for k, v in options_dict(options).items())
    raise UserCodeError(
        f"defines {' and '.join(p.names for p in present)} but no "
        f"{' nor '.join(f'{n}(...)' for n in lacks)}, CS231n's {base.name} for this spec's "
        f"options ({opts})",
        source=str(path),
    )


def unfit(base: Any, options: Any, path: Path) -> None:
    """The layer has CS231n forms, but none for these options (batchnorm's spatial: 1)."""
    forms = base.cs231n
    raise UserCodeError(
        f"CS231n's {' and '.join(f.forward for f in forms)} "
        f"({forms[0].hint or 'its forms'}) {'take' if len(forms) > 1 else 'takes'} none of "
        "this spec's options "
        f"({', '.join(f'{k}: {v}' for k, v in options_dict(options).items())})",
        source=str(path),
    )


def order(t: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    """The tensors in the order the functions take and return them: the layer's (a custom
    layer's: the spec's or the ``tensors`` mapping's)."""
    return [n for n in names if n in t] + [n for n in t if n not in names]


@record
class Call:
    """The user's functions in one of CS231n's forms, called in their layout."""

    path: Path
    forward: Callable[..., Any]
    backward: Callable[..., Any] | None  # None: one loss function, (loss, dx)
    fwd: str  # their names, in messages
    bwd: str
    form: Form | None  # the layer's declared form; None: gradcli's layout, options as keywords
    constants: tuple[str, ...]  # labels, indices, targets: passed, never given a gradient
    why: str = ""  # why gradcli calls them so, in words: "your backward takes (dout, cache)"
    custom: bool = False  # a layer of the user's own: a float tensor may be data (a target)

    def run(
        self, t: Mapping[str, np.ndarray], names: list[str], kwargs: Mapping[str, Any],
        options: Any, out_shape: tuple[int, ...] | None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """Their forward on ``t``: (gradcli's output, what backward needs)."""
        form = self.form
        shapes = {n: np.shape(a) for n, a in t.items()}
        if form is not None:
            self._ranks(form, t)

        def go(a: dict[str, Any]) -> Any:
            if form is None:
                return self.forward(*(a[n] for n in names), **kwargs)
            extra = form.params(options, shapes) if form.params else ()  # fresh dicts each call
            return self.forward(*(form.arg(n).to(a[n]) for n in names), *extra)

        value = read_only_call(self.path, self.fwd, go, t)
        if self.backward is None:
            return self._loss(value, names, t)
        outputs = form.outputs if form else 1
        if not (isinstance(value, tuple) and len(value) == outputs + 1):
            got = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
            want = ", ".join(f"out{k + 1}" for k in range(outputs)) if outputs > 1 else "out"
            takes = _arguments(self.backward)
            if form is None and takes is not None and takes != outputs + 1:
                # several outputs in a custom layer's pair: 'its backward takes 2 arguments'
                # beside one taking 3 (outside test t67b F2)
                raise UserCodeError(
                    f"{self.fwd} returns {got} and {self.bwd} takes {takes} arguments: a custom "
                    f"layer in CS231n's form has one output, forward(...) -> (out, cache), "
                    f"backward(dout, cache) (several outputs are a built-in layer's, "
                    f"lstm_step's); write forward and backward in gradcli's form, returning "
                    f"the outputs as one array",
                    source=str(self.path),
                )
            raise UserCodeError(
                f"{self.fwd} must return ({want}, cache) under {CONVENTION} (its backward "
                f"takes {outputs + 1} arguments); got {got}",
                source=str(self.path),
            )
        outs, cache = value[:-1], value[-1]
        if form is None:
            return outs[0], cache
        assert out_shape is not None
        expected = [np.shape(o) for o in form.out.split(np.empty(out_shape))]
        what = [f"output {k + 1} of {len(outs)}" if len(outs) > 1 else "out" for k in range(
            len(outs))]  # fmt: skip
        theirs = [self._array(o, f"{self.fwd}'s {what[k]}") for k, o in enumerate(outs)]
        for k, (a, want) in enumerate(zip(theirs, expected, strict=True)):
            if a.shape != want:
                self._refuse(f"{self.fwd}'s {what[k]} has shape {list(a.shape)}, expected "
                             f"{list(want)}")  # fmt: skip
        return form.out.join(tuple(theirs), out_shape), cache

    def gradients(
        self, g: np.ndarray, kept: Any, t: Mapping[str, np.ndarray], names: list[str]
    ) -> dict[str, Any]:
        """Their backward for upstream ``g``: gradcli's gradients, by name."""
        named = [n for n in names if n not in self.constants]
        if self.backward is None:  # (loss, dx): dx is d loss / dx, times the upstream
            grads = [np.asarray(a) * g for a in kept]
        else:
            form, backward = self.form, self.backward
            douts = form.out.split(g) if form else (g,)
            # their own copies: CS231n's lstm_step_backward adds into dnext_c (`+=`)
            value = backward(*(np.array(d) for d in douts), kept)
            grads = gradients(value, named, self.path, self.bwd)
        if self.form is None:
            return dict(zip(named, grads, strict=True))
        out = {}
        for k, (n, a) in enumerate(zip(named, grads, strict=True)):
            arg = self.form.arg(n)
            want = np.shape(arg.to(np.empty(np.shape(t[n]))))
            a = self._array(a, f"{self.bwd}'s d{n}")
            if a.shape != want and _squeezed(a.shape) == _squeezed(want):
                a = a.reshape(want)  # dgamma as (1, D): CS231n's notebooks compare by broadcasting
            if a.shape != want:
                self._refuse(f"{self.bwd}'s gradient {k + 1} of {len(named)} (d{n}) has shape "
                             f"{list(a.shape)}, expected {list(want)}"
                             f"{result.transposed(a.shape, want, n)}")  # fmt: skip
            out[n] = arg.back(a, np.shape(t[n]))
        return out

    def where(self, names: list[str], name: str, shape: tuple[int, ...],
              index: tuple[int, ...]) -> str:  # fmt: skip
        """Where element ``index`` of gradcli's gradient d``name`` (of ``shape``) is in the
        array their backward returns: ``dw[3,2]`` for dW[o=2, i=3] (w = W transposed), named
        after their forward's own parameter, so that a student finds it in their own code."""
        arg = self.form.arg(name) if self.form else None
        theirs = index
        if arg is not None:  # their layout of an array of flat indices: where ours went
            size = int(np.prod(shape, dtype=np.int64))
            flat = int(np.ravel_multi_index(index, shape)) if shape else 0
            moved = np.asarray(arg.to(np.arange(size).reshape(shape)))
            theirs = tuple(int(i) for i in np.argwhere(moved == flat)[0])
        return f"d{self._param(names, name)}[{','.join(map(str, theirs))}]"  # Python's own

    def in_layout(self, e: UserCodeError, fn: str, passed: Callable[[], str]) -> UserCodeError:
        """``fn`` raised while gradcli called it in CS231n's layout: its error says so, with what
        gradcli passed (``passed()``) and why, first, where the user's own message cannot push
        it off the line. Code written in gradcli's layout (W (out, in)) otherwise dies with a
        bare numpy error about shapes it never chose."""
        if self.form is None or not self.form.layout or not e.message.startswith(f"{fn} raised"):
            return e
        return UserCodeError(
            f"gradcli called {fn} in CS231n's layout ({self.form.layout}) as {self.why}: "
            f"{passed()}; {e.message}",
            source=e.source, key=e.key, param=e.param,
        )  # fmt: skip

    @property
    def called_as(self) -> str:
        """How and why their functions are called, for an error about the tensors' shapes."""
        if self.form is None or not self.form.layout:
            return ""
        fn = named(self.forward, self.fwd)
        return f"your {fn} in CS231n's layout ({self.form.layout}) as {self.why}"

    def passed(self, t: Mapping[str, Any], names: list[str]) -> str:
        """The arrays their forward got: ``x (6, 5), W (5, 3) (gradcli's W (3, 5)), b (3,)``."""
        assert self.form is not None
        out = []
        for n in names:
            ours = tuple(np.shape(t[n]))
            theirs = tuple(np.shape(self.form.arg(n).to(np.asarray(t[n]))))
            mine = f" (gradcli's {n} {ours})" if theirs != ours else ""
            out.append(f"{self._param(names, n)} {theirs}{mine}")
        return ", ".join(out)

    def _param(self, names: list[str], name: str) -> str:
        """Their forward's parameter that receives tensor ``name`` (by position), else ours."""
        try:
            params = list(inspect.signature(self.forward).parameters)
        except (TypeError, ValueError):
            return name
        k = names.index(name) if name in names else len(params)
        return params[k] if k < len(params) else name

    def _loss(self, value: Any, names: list[str], t: Mapping[str, Any]) -> tuple[Any, Any]:
        named = [n for n in names if n not in self.constants]
        want = ", ".join(f"d{n}" for n in named)
        if isinstance(value, list):  # [loss, dx] as (loss, dx), as a backward's list is read
            value = tuple(value)  # (refused as 'got list': outside test t55a F8)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
            # CS231n's model.loss: (loss, grads) with grads keyed by the parameters' names
            grads = value[1]
            missing = [n for n in named if n not in grads]
            if missing:
                raise UserCodeError(
                    f"{self.fwd} returns (loss, grads) with grads a dict, whose keys must be "
                    f"the spec's tensor names: it has no {', '.join(repr(n) for n in missing)} "
                    f"(its keys: {', '.join(repr(str(k)) for k in list(grads)[:8])})"
                    + (as_data(missing) if self.custom else ""),
                    source=str(self.path),
                )
            value = (value[0], *(grads[n] for n in named))
        if not (isinstance(value, tuple) and len(value) == len(named) + 1):
            got = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
            short = self.custom and isinstance(value, tuple) and 1 < len(value) <= len(named)
            raise UserCodeError(
                f"{self.fwd} is one function, read as a loss: it must return (loss, {want}); "
                f"got {got}" + ("; a tensor that is data, never differentiated (a loss's "
                                "target), is listed in the spec as data: [NAME]" if short else ""),
                source=str(self.path),
            )
        loss = self._array(result.scalar_in(value[0], t), f"{self.fwd}'s loss")
        if loss.size != 1:
            raise UserCodeError(
                f"{self.fwd} is one function, read as a loss: its loss must be a scalar, got "
                f"shape {list(loss.shape)} (a layer with an output is a NAME_forward/"
                f"NAME_backward pair)",
                source=str(self.path),
            )
        return loss.reshape(()), value[1:]

    def _ranks(self, form: Form, t: Mapping[str, np.ndarray]) -> None:
        leads = {n: np.shape(t[n])[:-1] for n in form.batch if n in t}
        if len(set(leads.values())) > 1:
            shapes = ", ".join(f"{n} {list(np.shape(t[n]))}" for n in leads)
            self._refuse(f"CS231n's {form.forward} takes {' and '.join(leads)} with the same "
                         f"batch axes ({form.hint}); this spec has {shapes}")  # fmt: skip
        for n, k in form.ndim.items():
            if n in t and np.ndim(t[n]) != k:
                shape = list(np.shape(t[n]))
                self._refuse(f"CS231n's {form.forward} takes {n} with {k} axes ({form.hint}); "
                             f"this spec's tensors.{n} has shape {shape}")  # fmt: skip

    def _array(self, value: Any, what: str) -> np.ndarray:
        return result.array(value, self.path, what, complex_ok=True)

    def _refuse(self, text: str) -> None:
        layout = f" ({self.form.layout})" if self.form and self.form.layout else ""
        raise UserCodeError(text + layout, source=str(self.path))


def named(fn: Any, fallback: str) -> str:
    """A function's own name (the API's ``forward=conv_forward_naive``), else ``fallback``."""
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else fallback


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def gradients(value: Any, names: list[str], path: Path, what: str) -> list[Any]:
    """A backward's tuple of gradients: one per tensor, in order."""
    if len(names) == 1 and not isinstance(value, (tuple, list)):
        value = (value,)  # relu_backward returns dx alone
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        got = f"{len(value)} values" if isinstance(value, (tuple, list)) else type(value).__name__
        raise UserCodeError(
            f"{what} must return one gradient per tensor ({', '.join('d' + n for n in names)}, "
            f"in this order) under {CONVENTION}; got {got}",
            source=str(path),
        )
    return list(value)


def _arguments(fn: Any) -> int | None:
    """How many plain positional parameters ``fn`` takes, or None (no signature, *args)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return len(params) if all(p.kind in plain for p in params) else None
