"""The user's own gradients to check (``--grads``): an .npz, one .npy, or a YAML mapping."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import GradcliError, mention
from gradcli.files.reading import load_array, npz_names, parse_yaml, read_spec_text
from gradcli.inputs.sources import Loader, suggest
from gradcli.inputs.spec import DEFAULT_MAX_ELEMENTS, load_source
from gradcli.layers import cs231n


class Answers(dict):
    """name -> gradient (float64, as every check compares them), and ``dtypes``: the dtype each
    was given in, what the tables show (float32 answers read 'float64' there: outside test t31b
    F5)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dtypes: dict[str, np.dtype] = {}
        # given in a dtype too coarse for a gradient (float16, integers): a failure says so
        self.coarse: dict[str, np.dtype] = {}

    def put(self, name: str, a: np.ndarray, given: Any = None) -> None:
        """``a`` as the gradient of ``name``, in float64; the dtype it was given in (``given``,
        else ``a``'s) kept where it is a float (an integer answer is shown as the float64 it
        is read as)."""
        given = a.dtype if given is None else given
        self[name] = a.astype(np.float64)
        if isinstance(given, np.dtype) and given.kind == "f":
            self.dtypes[name] = given
        if isinstance(given, np.dtype) and (given.kind in "iu" or given == np.float16):
            self.coarse[name] = given

    def given(self, name: str) -> np.ndarray:
        """The gradient of ``name`` in the dtype it was given in (exact: float64 held it)."""
        a = self[name]
        dtype = self.dtypes.get(name)
        return a if dtype is None or dtype == a.dtype else a.astype(dtype)


def load_answers(
    target: str,
    wrt: str | None,
    shapes: Mapping[str, tuple[int, ...]],
    intermediates: Mapping[str, tuple[int, ...]] | None = None,
    *,
    counted: int = 0,
    max_elements: int = 0,
    constants: tuple[str, ...] = (),
    layer: Any = None,
    options: Any = None,
) -> Answers:
    """The user's gradients to check, keyed by tensor name: an .npz (keys NAME or dNAME; in an
    archive written by ``compute -o``, edited or not, only its dNAME arrays), an .npy with
    --wrt NAME, or a YAML mapping NAME: source (inline values, .npy paths ...).
    ``intermediates`` (name: shape) may be answered too (attention's S, A, ...). Every array
    counts against ``max_elements`` exactly as a spec's tensors do, on from the spec's
    ``counted`` elements, from headers and YAML before it is read. An array of the wrong shape
    that is its tensor in CS231n's layout (``layer``'s forms at ``options``) is refused saying
    so, with the numpy call that turns it into gradcli's."""
    if target == "-":  # ('-: file not found: -': outside test t65c F9)
        raise GradcliError("answers are not read from stdin: give --grads a file (.npz, .npy "
                           "with --wrt, or YAML)", param="grads")  # fmt: skip
    budget = Loader(Path.cwd(), target, 0, "float64", max_elements or DEFAULT_MAX_ELEMENTS)
    budget.used, budget.what = counted, "the answers and the spec's arrays"

    def reserve(key: str) -> Callable[[int], None]:
        return lambda n: budget.reserve(n, key)

    path = Path(target)
    inter = dict(intermediates or {})
    known = f"tensors: {', '.join(shapes)}"
    known += f"; intermediates: {', '.join(inter)}" if inter else ""
    shapes = {**inter, **shapes}
    if wrt is not None and wrt not in shapes and wrt[:1] == "d" and wrt[1:] in shapes:
        wrt = wrt[1:]  # --wrt dW is W, as an answer file's keys are
    no_grad = {n: n for n in constants} | {"d" + n: n for n in constants}
    if wrt is not None and wrt not in shapes and wrt in no_grad:
        raise GradcliError(
            f"{no_grad[wrt]!r} is not differentiated (labels, indices and targets have no "
            f"gradient; {known})",
            param="wrt",
        )
    if wrt is not None and wrt not in shapes:
        raise GradcliError(f"{wrt!r} is not a tensor of this spec{_near(wrt, shapes)} ({known})",
                           param="wrt")  # fmt: skip
    if path.suffix in (".yaml", ".yml"):
        text, source, base = read_spec_text(target)
        doc = parse_yaml(text, source=source, max_elements=budget.max_elements)
        if not isinstance(doc, dict):
            raise GradcliError("expected a mapping of tensor names to gradients", source=target)
        for k in doc:  # named before any is read (a 'dq: foo.npy' said 'file not found')
            _name_of(str(k), shapes, no_grad, known, target)
        raw = {
            str(k): load_source(v, str(k), base=base, source=source, budget=budget)
            for k, v in doc.items()
        }
    elif path.suffix == ".npy" or wrt is not None:
        if wrt is not None and path.suffix == ".npz":  # an archive names its own arrays
            raise GradcliError(
                f"{target} is an .npz archive, whose keys (dNAME or NAME) say which gradient "
                f"each array is: drop {mention('wrt')}, or give one array as a .npy file",
                param="wrt",
            )
        if wrt is None:
            raise GradcliError(
                f"{target} holds one array: say which tensor's gradient it is with "
                f"{mention('wrt')} NAME",
                param="grads",
            )
        raw = {wrt: load_array(path, None, source=target, key=wrt, reserve=reserve(wrt))}
    else:
        keys = npz_names(path, source=target)
        values = [k for k in keys if k[:1] != "d" and k not in ("output", "grad_output")
                  and not k.startswith("numeric_d")]  # fmt: skip
        foreign = [k for k in values if k not in shapes and k not in no_grad]
        if {"output", "grad_output"} <= set(keys) and foreign:
            # another layer's archive: 'X' is not a tensor of this spec (did you mean 'x'?)
            # read as a typo (outside test t65c F9)
            raise GradcliError(
                f"an archive `compute -o` wrote for another layer (its tensors "
                f"{', '.join(values)}); this check's tensors are {', '.join(shapes)}",
                source=target)  # fmt: skip
        if {"output", "grad_output"} <= set(keys):  # a `compute -o` archive: its d<NAME> arrays
            # and what compute never writes (a d<label>, a misspelled dw), refused as in any
            # answer file; its tensors', output's and intermediates' values are no answers, nor
            # a `check -o` archive's numerical gradients (numeric_dX: outside test t50b F4)
            keys = [k for k in keys if (k[:1] == "d" and (k[1:] in shapes or k[1:] in no_grad))
                    or not (k in ("output", "grad_output") or k in shapes or k in no_grad
                            or (k.startswith("numeric_d") and k[9:] in shapes))]
        raw = {k: load_array(path, k, source=target, key=k, reserve=reserve(k)) for k in keys}
    if not raw:  # (an empty archive: the refusal named no file)
        raise GradcliError(f"holds no answer (expected the gradients of {known})", source=target)
    answers = Answers()
    for key, a in raw.items():
        name = _name_of(key, shapes, no_grad, known, target)
        a = np.asarray(a)
        if a.dtype.kind == "c":  # its values may well be finite: the kind is what is wrong
            raise GradcliError(f"expected real numbers, got {a.dtype} (complex)", source=target,
                               key=key)  # fmt: skip
        if a.dtype.kind not in "fiu":  # a bool mask's values are finite: its kind is wrong
            raise GradcliError(f"expected numbers, got an array of {a.dtype}", source=target,
                               key=key)  # fmt: skip
        if not np.isfinite(a).all():  # where, as a tensor's is said (outside test t55a F8)
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            at = f" at index {list(bad)}" if bad else ""
            raise GradcliError(f"{a[bad]}{at}; expected finite numbers", source=target,
                               key=key)  # fmt: skip
        if a.shape != tuple(shapes[name]):
            what = "the intermediate " + name if name in inter else name
            raise GradcliError(
                f"the gradient has shape {list(a.shape)} but {what} has shape "
                f"{list(shapes[name])}{_theirs(layer, options, shapes, inter, raw, key)}",
                source=target, key=key,
            )  # fmt: skip
        if name in answers:
            raise GradcliError(
                f"both {name!r} and {'d' + name!r} answer the gradient of {name}; keep one",
                source=target, key=key,
            )  # fmt: skip
        answers.put(name, a)
    return answers


def _name_of(key: str, shapes: Mapping[str, Any], no_grad: Mapping[str, str], known: str,
             target: str) -> str:  # fmt: skip
    """The tensor an answer's ``key`` (NAME or dNAME) answers, or a refusal naming it."""
    if key in shapes:
        return key
    if key.startswith("d") and key[1:] in shapes:
        return key[1:]
    if key in no_grad:
        raise GradcliError(
            f"{no_grad[key]} is not differentiated (labels, indices and targets have no "
            f"gradient; {known})",
            source=target, key=key,
        )  # fmt: skip
    # np.savez(FILE, dx, dW) names them arr_0, arr_1 (outside test t38a N7)
    named = (f"; np.savez names arrays given by position arr_0, arr_1, ...: save them by name, "
             f"np.savez(FILE, {', '.join(f'{n}=d{n}' for n in shapes)})"
             if re.fullmatch(r"arr_\d+", key) else "")
    raise GradcliError(f"{key!r} is not a tensor of this spec{_near(key, shapes)} ({known})"
                       f"{named}", source=target, key=key)  # fmt: skip


def _theirs(
    layer: Any, options: Any, shapes: Mapping[str, tuple[int, ...]], inter: Mapping[str, Any],
    raw: Mapping[str, Any], key: str,
) -> str:  # fmt: skip
    """The tail of a shape error where the answer is CS231n's layout of its tensor (and the
    calls for the file's other answers in that layout, so that one run names every fix)."""
    if layer is None:
        return ""

    def named(k: str) -> str | None:
        n = k if k in shapes else k[1:] if k.startswith("d") and k[1:] in shapes else None
        return None if n is None or n in inter else n

    name = named(key)
    if name is None:
        return ""
    try:
        words = cs231n.answer_words(layer, options, name, shapes[name], np.shape(raw[key]), key)
        if not words:
            return ""
        more = [cs231n.answer_call(layer, options, n, shapes[n], np.shape(raw[k]), k)
                for k in raw if k != key and (n := named(k)) is not None]  # fmt: skip
    except Exception:  # noqa: BLE001 - a layer's form that cannot read these shapes says nothing
        return ""
    more = [m for m in more if m]
    return f": {words}" + (f" (and {', '.join(more)})" if more else "")


def _near(key: str, names: Mapping[str, object]) -> str:
    """A "did you mean" in the spelling the key used (dfc.w: dfc.W)."""
    d = key.startswith("d") and key[1:] not in names
    spelled = ["d" + n if d else n for n in names]
    same = [n for n in spelled if n.lower() == key.lower()]  # difflib weighs case as much
    return f" (did you mean {same[0]!r}?)" if same else suggest(key, spelled)
