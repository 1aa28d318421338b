"""The Python API: what the CLI does, as functions returning data.

    report = gradcli.check("conv2d", {"X": X, "W": W, "b": b}, options={"stride": 2})
    report.passed, report.results["W"].max_abs_error, report.to_json(), str(report)

It never prints (the user's own code prints to stderr while it runs, as in the CLI), never
ends the process and reads no file unless asked (``check_spec``). Every keyword is checked
before anything runs; bad input raises :class:`gradcli.errors.GradcliError` (or a subclass)
naming the parameter (``err.param``). A mismatch is a result: ``report.passed`` is False, as
the CLI's exit code is 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.checking.check import CheckOptions
from gradcli.checking.check import check as _run_check
from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation
from gradcli.checking.compute import compute as _run_compute
from gradcli.checking.report import CheckReport
from gradcli.errors import GradcliError, OptionError, brief, one_of
from gradcli.inputs import arguments as arg
from gradcli.inputs.spec import (
    DEFAULT_MAX_ELEMENTS,
    DTYPES,
    MAX_SEED,
    Spec,
    build_spec,
    load_spec,
)  # fmt: skip
from gradcli.layers import get_layer
from gradcli.render import jsondoc
from gradcli.render import text as render
from gradcli.user.call import forget_warnings
from gradcli.user.given import impl_of, is_name, runs_user_code
from gradcli.user.impl import user_layer

__all__ = [
    "Computation", "NetworkReport", "Report", "TensorResult", "assert_gradients", "check",
    "check_network", "check_spec", "compute", "compute_network",
]  # fmt: skip


class Report:
    """The result of a check: the same verdict, numbers and text as ``gradcli check``."""

    def __init__(
        self, spec: Spec, computation: Computation, numeric: dict[str, np.ndarray],
        report: CheckReport, grads: Mapping[str, np.ndarray] | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.computation = computation
        self.numeric = numeric  # numerical gradients, NaN where not evaluated
        self.check = report
        self._grads = grads

    @property
    def passed(self) -> bool:
        """True exactly when ``gradcli check`` would exit 0."""
        return self.check.passed

    @property
    def results(self) -> Mapping[str, TensorResult]:
        """Per tensor (and checked intermediate): errors, worst elements, hints, atol, mode."""
        return self.check.results

    @property
    def notes(self) -> tuple[str, ...]:
        return self.check.notes

    def to_json(self, *, values: bool = False) -> str:
        """The document ``gradcli check --format json`` prints (``values``: ``--values``)."""
        r = self.check
        doc = (
            jsondoc.check_doc(self.spec, r, self.computation, self.numeric)
            if values
            else jsondoc.check_doc(self.spec, r)
        )
        return jsondoc.to_json(doc)

    def table(self, *, width: int | None = None, values: bool = False) -> str:
        """The plain-text report ``gradcli check`` writes to a pipe (no ANSI codes): as wide as
        ``COLUMNS``, else 80 columns, unless ``width`` is given."""
        buf = io.StringIO()
        con = render.console(buf, plain=True)
        if width is not None:
            con.width = width
        render.render_check(
            con, self.spec, self.computation, self.numeric, self.check, self._grads,
            values=values,
        )  # fmt: skip
        return buf.getvalue()

    def verdict(self) -> str:
        """The summary line: PASS or FAIL naming every failure, as the CLI's last line."""
        return render.summary_line(self.spec, self.check).plain

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"<gradcli.Report {self.spec.layer.name}: {verdict}, {', '.join(self.results)}>"


def _spec(
    layer: Any, tensors: Mapping[str, Any] | None, *, options: Mapping[str, Any] | None,
    grad_output: Any, forward: Any, backward: Any, seed: int | None, dtype: str | None,
    max_elements: int,
) -> Spec:  # fmt: skip
    seed, dtype, max_elements = _spec_args(seed, dtype, max_elements)
    if options is not None:
        arg.mapping(options, "options")
    if tensors is not None:
        arg.mapping(tensors, "tensors")
    impl = impl_of(layer, forward, backward)
    name = layer if is_name(layer) else "custom"
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
    try:
        if impl is not None:
            from gradcli.inputs.spec import custom_names

            layer_obj = user_layer(impl, builtin, custom_names(doc) if builtin is None else ())
        else:
            layer_obj = builtin
        return build_spec(
            layer_obj, doc, base=Path.cwd(), source="", dtype=dtype, seed=seed,
            max_elements=max_elements,
        )  # fmt: skip
    except GradcliError as e:  # the document is made of the keywords: name the one at fault
        raise e.at(param=(e.key or "").split(".")[0] or None) from None


def _spec_args(seed: Any, dtype: Any, max_elements: Any) -> tuple[int | None, str | None, int]:
    if seed is not None:
        seed = arg.integer(seed, "seed", 0, MAX_SEED)
    if dtype is not None:
        dtype = arg.choice(dtype, "dtype", DTYPES)
    return seed, dtype, arg.integer(max_elements, "max_elements", 1)


def _options(
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
        budget=arg.number(budget, "budget"), top=arg.integer(top, "top"),
    )  # fmt: skip


def _answers(grads: Mapping[str, Any], spec: Spec) -> dict[str, np.ndarray]:
    """The caller's gradients to check (as ``--grads``), keyed NAME or dNAME."""
    from gradcli.checking import intermediates

    shapes = {**intermediates.shapes(spec), **spec.shapes}
    out: dict[str, np.ndarray] = {}
    for key, value in grads.items():
        name = key if key in shapes else key[1:] if key[1:] in shapes else None
        if name is None:
            raise OptionError(
                f"{brief(key)} is not a tensor of this spec ({one_of(shapes)})", param="grads"
            )
        if name in out:  # as in an answer file: W and dW are one gradient, given twice
            raise OptionError(
                f"both {name!r} and {'d' + name!r} given; give one of them", param="grads"
            )
        where = f"grads[{key!r}]"
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise OptionError(
                f"expected an array of numbers, got {type(value).__name__}", param=where
            ) from None
        if a.shape != tuple(shapes[name]):
            raise OptionError(
                f"expected shape {list(shapes[name])} (that of {name}), got shape {list(a.shape)}",
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
        out[name] = a
    return out


@contextlib.contextmanager
def _run() -> Iterator[None]:
    """One API call. gradcli itself prints nothing and changes no process state; the user's
    own code prints and warns on stderr, as in the CLI: only while it runs do sys.stdout and
    file descriptor 1 point there (gradcli/user/call.py), and its warnings are shown once
    each per call."""
    forget_warnings()
    yield


def check(
    layer: Any = None,
    tensors: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    grad_output: Any = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    method: str = "central",
    eps: float | str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str | None = None,
    samples: int = 64,
    coloring: bool = True,
    max_memory: float = 512,
    budget: float = 60.0,
    top: int = 5,
    grads: Mapping[str, Any] | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Report:
    """Check the gradients of ``layer``: a built-in layer's name (``"conv2d"``), or your own
    layer: a module, object or class with ``forward``/``backward``, or a path
    ``"mylayer.py[:NAME]"`` (as ``--impl``), or the ``forward=``/``backward=`` keywords (with a
    layer name: your implementation of that layer, whose forward is also compared with ours).
    ``tensors``: name -> array or nested list (omitted: the layer's default spec; an omitted
    bias is zeros). The keywords are the CLI's options (``max_memory`` in MB); ``grad_output``
    defaults to one drawn from ``seed``."""
    opts = _options(method, eps, atol, rtol, mode, samples, coloring, max_memory, budget, top,
                    grads)  # fmt: skip
    if grads is not None and runs_user_code(layer, forward, backward):
        raise OptionError(_GRADS_AND_IMPL, param="grads")
    with _run():
        spec = _spec(
            layer, tensors, options=options, grad_output=grad_output, forward=forward,
            backward=backward, seed=seed, dtype=dtype, max_elements=max_elements,
        )  # fmt: skip
        return _check(spec, opts, grads)


_GRADS_AND_IMPL = (
    "checks your gradients for a built-in layer, your own layer checks its own backward; "
    "give one of them"
)


def _check(spec: Spec, opts: CheckOptions, grads: Mapping[str, Any] | None) -> Report:
    if grads is not None:
        opts = dataclasses.replace(opts, grads=_answers(grads, spec))
    report = _run_check(spec, opts)
    return Report(spec, report.computation, report.numeric, report, opts.grads)


class NetworkReport:
    """The result of a network's check: the same verdict, JSON and text as ``gradcli check
    net``. ``layers``: each layer's local check (``.node.name``, ``.report.results``);
    ``first_wrong``: (index, name, layer, tensor) of the first wrong backward or None;
    ``end_to_end``: the whole network's results by tensor (``"fc1.W"``)."""

    def __init__(self, net: Any, report: Any) -> None:
        self.net, self.check = net, report

    @property
    def passed(self) -> bool:
        return self.check.passed

    @property
    def layers(self) -> tuple[Any, ...]:
        return self.check.layers

    @property
    def first_wrong(self) -> Any:
        return self.check.first_wrong

    @property
    def end_to_end(self) -> Mapping[str, TensorResult]:
        return self.check.end_to_end.results

    def to_json(self) -> str:
        from gradcli.render import netdoc

        return jsondoc.to_json(netdoc.check_doc(self.net, self.check))

    def table(self, *, width: int | None = None) -> str:
        from gradcli.render import network

        buf = io.StringIO()
        con = render.console(buf, plain=True)
        if width is not None:
            con.width = width
        network.render_check(con, self.net, self.check)
        return buf.getvalue()

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"<gradcli.NetworkReport {len(self.layers)} layers: {verdict}>"


def _network(model: Any, seed: int | None, dtype: str | None, max_elements: int) -> Any:
    """A model: a path to a model file, or the same mapping in code (arrays as tensors, and
    ``impl:`` may be a module or object with forward and backward)."""
    from gradcli.inputs.network import build_network, load_network

    if isinstance(model, (str, os.PathLike)):
        try:
            return load_network(
                os.fspath(model), dtype=dtype, seed=seed, max_elements=max_elements
            )
        except GradcliError as e:  # the model file (named as its source) is at fault
            raise e.at(param="model") from None
    if not isinstance(model, Mapping):
        raise OptionError(
            f"expected a model file or mapping, got {arg.got(model)}", param="model"
        )
    doc = dict(model)

    def own(entry: Any) -> Any:
        if isinstance(entry, Mapping) and "residual" in entry:
            return {**entry, "residual": [own(e) for e in entry["residual"]]}
        if isinstance(entry, Mapping) and "impl" in entry \
                and not isinstance(entry["impl"], (str, Path)):  # fmt: skip
            return {**entry, "impl": impl_of(entry["impl"], None, None, param="model")}
        return dict(entry) if isinstance(entry, Mapping) else entry

    if isinstance(doc.get("network"), list):
        doc["network"] = [own(e) for e in doc["network"]]
    if isinstance(doc.get("loss"), Mapping):
        doc["loss"] = own(doc["loss"])
    try:
        return build_network(doc, base=Path.cwd(), source="<model>", dtype=dtype, seed=seed,
                             max_elements=max_elements)  # fmt: skip
    except GradcliError as e:
        raise e.at(param="model") from None


def check_network(
    model: Any,
    *,
    method: str = "central",
    eps: float | str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str | None = None,
    samples: int = 64,
    coloring: bool = True,
    max_memory: float = 512,
    budget: float = 60.0,
    top: int = 5,
    grads: Mapping[str, Any] | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> NetworkReport:
    """What ``gradcli check net MODEL`` runs: ``model`` is a model file's path or the same
    mapping built in code, e.g. ``{"inputs": {"X": X}, "network": [{"layer": "linear",
    "name": "fc1", "tensors": {"W": W1}}, ...]}``. ``grads``: your gradients keyed by
    parameter (``"fc1.W"``) or boundary (``"dfc1.out"``), checked end to end."""
    from gradcli.checking.network import check_network as run

    opts = _options(method, eps, atol, rtol, mode, samples, coloring, max_memory, budget, top,
                    grads)  # fmt: skip
    seed, dtype, max_elements = _spec_args(seed, dtype, max_elements)
    with _run():
        net = _network(model, seed, dtype, max_elements)
        if grads is not None:
            opts = dataclasses.replace(opts, grads=_answers(grads, net.spec))
        return NetworkReport(net, run(net, opts))


def compute_network(
    model: Any, *, seed: int | None = None, dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Computation:  # fmt: skip
    """``gradcli compute net``: ``.output``, ``.gradients`` (``"X"``, ``"fc1.W"`` ...) and
    ``.intermediates`` (every boundary ``"fc1.out"`` and its gradient ``"dfc1.out"``)."""
    seed, dtype, max_elements = _spec_args(seed, dtype, max_elements)
    with _run():
        return _run_compute(_network(model, seed, dtype, max_elements).spec)


def _is_network(spec: str | os.PathLike[str], layer: str | None) -> bool:
    if layer is not None or os.fspath(spec) == "-":
        return layer == "net"
    from gradcli.files.reading import parse_yaml, read_spec_text

    try:
        text, source, _ = read_spec_text(os.fspath(spec))
        doc = parse_yaml(text, source=source, max_elements=DEFAULT_MAX_ELEMENTS)
    except GradcliError:
        return False  # load_spec says what is wrong with it
    return isinstance(doc, dict) and "network" in doc


def check_spec(
    spec: str | os.PathLike[str],
    layer: str | None = None,
    *,
    impl: Any = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    method: str = "central",
    eps: float | str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str | None = None,
    samples: int = 64,
    coloring: bool = True,
    max_memory: float = 512,
    budget: float = 60.0,
    top: int = 5,
    grads: Mapping[str, Any] | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Report:
    """What ``gradcli check LAYER SPEC`` runs, as a Report (``to_json()`` is its JSON
    byte for byte). ``layer`` defaults to the spec's ``layer`` key; ``impl``: your layer, as
    ``check``'s first argument accepts it (or ``forward=``/``backward=``). A model file (a
    ``network:`` key, or ``layer="net"``) is checked as ``check_network`` checks it."""
    if not isinstance(spec, (str, os.PathLike)):
        raise OptionError(f"expected the path of a spec file, got {arg.got(spec)}", param="spec")
    if layer is not None and not is_name(layer):
        raise OptionError(
            f"expected a layer name (your own layer goes in impl=), got {arg.got(layer)}",
            param="layer",
        )
    if _is_network(spec, layer):
        if impl is not None or forward is not None or backward is not None:
            raise OptionError("a network's own layers go in its entries (impl: FILE.py)",
                              param="impl")  # fmt: skip
        return check_network(  # type: ignore[return-value]
            spec, method=method, eps=eps, atol=atol, rtol=rtol, mode=mode, samples=samples,
            coloring=coloring, max_memory=max_memory, budget=budget, top=top, grads=grads,
            seed=seed, dtype=dtype, max_elements=max_elements,
        )
    opts = _options(method, eps, atol, rtol, mode, samples, coloring, max_memory, budget, top,
                    grads)  # fmt: skip
    seed, dtype, max_elements = _spec_args(seed, dtype, max_elements)
    if grads is not None and runs_user_code(impl, forward, backward):
        raise OptionError(_GRADS_AND_IMPL, param="grads")
    if layer == "custom" and not runs_user_code(impl, forward, backward):
        raise OptionError(
            "the layer 'custom' needs your forward and backward (impl=, or forward= and "
            "backward=)",
            param="impl",
        )
    with _run():
        code = impl_of(impl, forward, backward, param="impl")
        if layer not in (None, "custom"):
            try:
                get_layer(layer)
            except GradcliError as e:
                raise e.at(param="layer") from None
        try:
            s = load_spec(
                layer, os.fspath(spec), dtype=dtype, seed=seed, impl=code,
                max_elements=max_elements,
            )  # fmt: skip
        except GradcliError as e:  # the spec file (named as its source) is at fault
            raise e.at(param="spec") from None
        return _check(s, opts, grads)


def assert_gradients(
    layer: Any = None,
    tensors: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    grad_output: Any = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    method: str = "central",
    eps: float | str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str | None = None,
    samples: int = 64,
    coloring: bool = True,
    max_memory: float = 512,
    budget: float = 60.0,
    top: int = 5,
    grads: Mapping[str, Any] | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Report:
    """``check(...)`` for tests: returns the report when every gradient matches, else raises
    AssertionError whose first line is the verdict (the FAIL summary line), then the table."""
    report = check(
        layer, tensors, options=options, grad_output=grad_output, forward=forward,
        backward=backward, method=method, eps=eps, atol=atol, rtol=rtol, mode=mode,
        samples=samples, coloring=coloring, max_memory=max_memory, budget=budget, top=top,
        grads=grads, seed=seed, dtype=dtype, max_elements=max_elements,
    )  # fmt: skip
    if not report.passed:
        table = "".join(line.rstrip() + "\n" for line in str(report).splitlines())
        raise AssertionError(f"{report.verdict()}\n\n{table}")
    return report


def compute(
    layer: Any = None,
    tensors: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    grad_output: Any = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Computation:
    """The forward and analytical backward (``gradcli compute``): ``.output``,
    ``.gradients`` (name -> array) and ``.intermediates`` (attention's Q, K, V, S, A ...)."""
    with _run():
        spec = _spec(
            layer, tensors, options=options, grad_output=grad_output, forward=forward,
            backward=backward, seed=seed, dtype=dtype, max_elements=max_elements,
        )  # fmt: skip
        return _run_compute(spec)


__all__ += ["GradcliError"]
