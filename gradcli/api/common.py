"""What every API call shares: a spec built from Python values, checked options, the caller's
answers, and the frame of one call."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.api import blas
from gradcli.checking.check import CheckOptions
from gradcli.errors import GradcliError, OptionError, brief, one_of
from gradcli.inputs import arguments as arg
from gradcli.inputs.spec import (
    DTYPES,
    MAX_SEED,
    Spec,
    build_spec,
)  # fmt: skip
from gradcli.layers import cs231n, get_layer
from gradcli.layers.base import masked_count
from gradcli.user.call import forget_warnings
from gradcli.user.given import impl_of, is_name
from gradcli.user.impl import for_answers, user_layer

if TYPE_CHECKING:
    from gradcli.inputs.answers import Answers


def spec_from(
    layer: Any, tensors: Mapping[str, Any] | None, *, options: Mapping[str, Any] | None,
    grad_output: Any, forward: Any, backward: Any, seed: int | None, dtype: str | None,
    max_elements: int, data: Any = None, answers: dict[str, Any] | None = None,
) -> Spec:  # fmt: skip
    """``answers``: your own layer checked on saved answers (grads=): the dict its gradients
    are read from once read; a forward alone is then a forward, not a loss returning (loss,
    dx)."""
    seed, dtype, max_elements = spec_args(seed, dtype, max_elements)
    if options is not None:
        arg.mapping(options, "options")
    if tensors is not None:
        arg.mapping(tensors, "tensors")
    impl = impl_of(layer, forward, backward, forward_only=answers is not None)
    name = layer if is_name(layer) else "custom"
    if impl is not None and answers is not None:
        impl = for_answers(impl, answers)
    if impl is None and name == "custom":
        raise OptionError(
            f"expected a layer name, or your forward and backward, got {arg.got(layer)}",
            param="layer",
        )
    try:
        builtin = None if name == "custom" else get_layer(name)
    except GradcliError as e:
        raise e.at(param="layer") from None
    if tensors is None:
        if builtin is None:
            raise OptionError("your own layer needs its tensors", param="tensors")
        from gradcli.inputs.spec import default_document

        tensors = default_document(builtin)["tensors"]
    doc: dict[str, Any] = {"tensors": dict(tensors), "options": dict(options or {})}
    if grad_output is not None:
        doc["grad_output"] = grad_output
    if data is not None:
        doc["data"] = list(data) if isinstance(data, (list, tuple)) else data
    try:
        if impl is not None:
            from gradcli.inputs.spec import custom_data, custom_names

            custom = builtin is None
            layer_obj = user_layer(impl, builtin, custom_names(doc) if custom else (),
                                   doc["options"],
                                   data=custom_data(doc) if custom else ())  # fmt: skip
        else:
            layer_obj = builtin
        return build_spec(
            layer_obj, doc, base=Path.cwd(), source="", dtype=dtype, seed=seed,
            max_elements=max_elements,
        )  # fmt: skip
    except GradcliError as e:  # the document is made of the keywords: name the one at fault
        raise e.at(param=(e.key or "").split(".")[0] or None) from None


def spec_args(seed: Any, dtype: Any, max_elements: Any) -> tuple[int | None, str | None, int]:
    if seed is not None:
        seed = arg.integer(seed, "seed", 0, MAX_SEED)
    if dtype is not None:
        dtype = arg.choice(dtype, "dtype", DTYPES)
    return seed, dtype, arg.integer(max_elements, "max_elements", 1)


def check_options(
    method: Any, eps: Any, atol: Any, rtol: Any, mode: Any, samples: Any, coloring: Any,
    max_memory: Any, budget: Any, top: Any, grads: Any,
) -> CheckOptions:  # fmt: skip
    """The check's keywords, each checked for its type (the CLI's parser does that there) and
    then its range (CheckOptions), before anything runs."""
    if isinstance(eps, str) and eps.lower() == "auto":
        eps = None
    elif isinstance(eps, str):
        raise OptionError(f"expected 'auto' or a number, got {brief(eps)}", param="eps")
    # "Central", "COMPLEX": a method or mode is a name, not a spelling
    method = arg.text(method, "method").lower()
    mode = "auto" if mode is None else arg.text(mode, "mode").lower()
    if grads is not None:
        arg.mapping(grads, "grads")
    return CheckOptions(
        method=method,
        eps=None if eps is None else arg.number(eps, "eps"),
        atol=None if atol is None else arg.number(atol, "atol"),
        rtol=None if rtol is None else arg.number(rtol, "rtol"),
        mode=mode, samples=arg.integer(samples, "samples"),
        coloring=arg.boolean(coloring, "coloring"),
        max_memory=round(arg.number(max_memory, "max_memory") * 2**20),
        budget=arg.number(budget, "budget", infinite=True), top=arg.integer(top, "top"),
    )  # fmt: skip


def answers_of(grads: Mapping[str, Any], spec: Spec) -> Answers:
    """The caller's gradients to check (as ``--grads``), keyed NAME or dNAME."""
    from gradcli.checking import intermediates
    from gradcli.inputs.answers import Answers

    shapes = {**intermediates.shapes(spec), **spec.grad_shapes}
    constants = spec.layer.constants(spec.shapes, spec.options)
    out = Answers()
    for key, value in grads.items():
        name = key if key in shapes else key[1:] if key[1:] in shapes else None
        if name is None and (key in constants or key[1:] in constants):
            raise OptionError(
                f"{key!r}: {key.removeprefix('d') if key not in constants else key} is not "
                "differentiated (labels, indices and targets have no gradient)",
                param="grads",
            )
        if name is None:
            raise OptionError(
                f"{brief(key)} is not a tensor of this spec ({one_of(shapes)})", param="grads"
            )
        if name in out:  # as in an answer file: W and dW are one gradient, given twice
            raise OptionError(
                f"both {name!r} and {'d' + name!r} given; give one of them", param="grads"
            )
        where = f"grads[{key!r}]"
        # None read as a 0-d NaN ('expected shape [3, 4], got shape []'), and a masked array's
        # hidden values were checked where tensors= refuses it (outside test t63b F9)
        if value is None:
            raise OptionError("expected an array of numbers, got None", param=where)
        if masked_count(value):
            raise OptionError(
                f"is a masked array with {masked_count(value)} masked value(s); give a plain "
                f"array (np.ma.filled)", param=where)  # fmt: skip
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise OptionError(
                f"expected an array of numbers, got {type(value).__name__}", param=where
            ) from None
        if a.shape != tuple(shapes[name]):
            theirs = "" if name not in spec.grad_shapes else cs231n.answer_words(
                spec.layer, spec.options, name, shapes[name], a.shape, key, verb="pass"
            )
            raise OptionError(
                f"expected shape {list(shapes[name])} (that of {name}), got shape "
                f"{list(a.shape)}{': ' + theirs if theirs else ''}",
                param=where,
            )
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise OptionError(
                f"expected finite numbers, got {int(bad.sum()):,} not finite (the first, "
                f"{a[first]}, at index {list(first)})",
                param=where,
            )
        out.put(name, a, getattr(value, "dtype", None))
    return out


# what the user's code runs under is process-wide (sys.stdout and fd 1 pointed at stderr,
# its folder on sys.path, its helper modules in sys.modules, warning filters): saved and put
# back per call, which two threads interleaving would undo for each other (one thread's
# helpers.py serving the other's layer.py, stdout left on stderr for good), so calls that run
# a user's code run one at a time; reentrant for a user's code that calls gradcli itself. A
# call of built-in layers only changes nothing process-wide and takes no turn: a user's
# backward may hand gradcli.compute("tanh", ...) to worker threads while its own check waits
_USER_CODE = threading.RLock()


@contextlib.contextmanager
def api_call(user_code: bool = True) -> Iterator[None]:
    """One API call. gradcli itself prints nothing and changes no process state; the user's
    own code prints and warns on stderr, as in the CLI: only while it runs do sys.stdout and
    file descriptor 1 point there (gradcli/user/call.py), and its warnings are shown once
    each per call. Calls that run ``user_code`` from several threads run one after another.
    numpy's OpenBLAS runs one thread during the call, as on the command line (api/blas.py)."""
    if not user_code:
        with blas.one_thread():
            yield
        return
    with _USER_CODE, blas.one_thread():
        forget_warnings()
        yield
