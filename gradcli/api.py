"""The Python API: what the CLI does, as functions returning data.

    report = gradcli.check("conv2d", {"X": X, "W": W, "b": b}, options={"stride": 2})
    report.passed, report.results["W"].max_abs_error, report.to_json(), str(report)

It never prints, never ends the process and reads no file unless asked (``check_spec``); bad
input raises :class:`gradcli.errors.GradcliError` (or a subclass). A mismatch is a result:
``report.passed`` is False, as the CLI's exit code is 1.
"""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.checking.check import CheckOptions
from gradcli.checking.check import check as _run_check
from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation
from gradcli.checking.compute import compute as _run_compute
from gradcli.checking.report import CheckReport
from gradcli.errors import GradcliError, OptionError
from gradcli.inputs.spec import DEFAULT_MAX_ELEMENTS, Spec, build_spec, load_spec
from gradcli.layers import get_layer
from gradcli.render import jsondoc
from gradcli.render import text as render
from gradcli.user.impl import Impl, load_impl, user_layer

__all__ = [
    "NetworkReport", "Report", "assert_gradients", "check", "check_network", "check_spec",
    "compute", "compute_network",
]


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

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"<gradcli.Report {self.spec.layer.name}: {verdict}, {', '.join(self.results)}>"


def _impl(layer: Any, forward: Any, backward: Any) -> Impl | None:
    """The user's functions: ``forward=``/``backward=`` callables, or an object or module
    holding both (what ``--impl FILE.py[:NAME]`` accepts), or a path to such a file."""
    if isinstance(layer, (str, Path)) and (str(layer).endswith(".py") or ".py:" in str(layer)):
        return load_impl(str(layer))
    if forward is None and backward is None:
        if isinstance(layer, str) or layer is None:
            return None
        forward, backward = getattr(layer, "forward", None), getattr(layer, "backward", None)
        holder = getattr(layer, "__name__", type(layer).__name__)
    else:
        holder = ""
    for what, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise OptionError(f"expected a callable, got {type(fn).__name__}", param=what)
    try:
        path = Path(inspect.getsourcefile(forward) or f"<{holder or 'forward'}>")
    except TypeError:  # a builtin or a C function
        path = Path(f"<{holder or 'forward'}>")
    return Impl(path, forward, backward, "" if inspect.ismodule(layer) else holder)


def _spec(
    layer: Any, tensors: Mapping[str, Any] | None, *, options: Mapping[str, Any] | None,
    grad_output: Any, forward: Any, backward: Any, seed: int | None, dtype: str | None,
    max_elements: int,
) -> Spec:  # fmt: skip
    impl = _impl(layer, forward, backward)
    name = layer if isinstance(layer, str) and not layer.endswith(".py") else "custom"
    if impl is None and name == "custom":
        raise OptionError("expected a layer name, or your forward and backward", param="layer")
    builtin = None if name == "custom" else get_layer(name)
    if tensors is None:
        if builtin is None:
            raise OptionError("your own layer needs its tensors", param="tensors")
        from gradcli.inputs.spec import default_document

        tensors = default_document(builtin)["tensors"]
    if not isinstance(tensors, Mapping):
        raise OptionError(
            f"expected a mapping of tensor names to arrays, got {type(tensors).__name__}",
            param="tensors",
        )
    doc: dict[str, Any] = {"tensors": dict(tensors), "options": dict(options or {})}
    if seed is not None:
        doc["seed"] = seed
    if dtype is not None:
        doc["dtype"] = dtype
    if grad_output is not None:
        doc["grad_output"] = grad_output
    if impl is not None:
        from gradcli.inputs.spec import custom_names

        layer_obj = user_layer(impl, builtin, custom_names(doc) if builtin is None else ())
    else:
        layer_obj = builtin
    return build_spec(layer_obj, doc, base=Path.cwd(), source="", max_elements=max_elements)


def _options(
    method: str, eps: float | str | None, atol: float | None, rtol: float | None,
    mode: str | None, samples: int, coloring: bool, max_memory: float, budget: float, top: int,
    grads: Mapping[str, Any] | None, spec: Spec,
) -> CheckOptions:  # fmt: skip
    if eps == "auto":
        eps = None
    # "Central", "COMPLEX": a method or mode is a name, not a spelling
    method = method.lower() if isinstance(method, str) else method
    mode = mode.lower() if isinstance(mode, str) else mode
    opts = CheckOptions(
        method=method, eps=None if eps is None else float(eps), atol=atol, rtol=rtol,
        mode=mode or "auto", samples=samples, coloring=coloring,
        max_memory=int(max_memory * 2**20), budget=budget, top=top,
        grads=None if grads is None else _answers(grads, spec),
    )  # fmt: skip
    return opts


def _answers(grads: Mapping[str, Any], spec: Spec) -> dict[str, np.ndarray]:
    """The caller's gradients to check (as ``--grads``), keyed NAME or dNAME."""
    from gradcli.checking import intermediates

    shapes = {**intermediates.shapes(spec), **spec.shapes}
    out = {}
    for key, value in grads.items():
        name = key if key in shapes else key[1:] if key[1:] in shapes else None
        if name is None:
            raise OptionError(
                f"{key!r} is not a tensor of this spec ({', '.join(shapes)})", param="grads"
            )
        a = np.asarray(value, dtype=np.float64)
        if a.shape != tuple(shapes[name]) or not np.isfinite(a).all():
            raise OptionError(
                f"expected finite numbers of shape {list(shapes[name])}, got shape {list(a.shape)}",
                param=f"grads[{key!r}]",
            )
        out[name] = a
    return out


@contextlib.contextmanager
def _silent():
    """The user's code prints to stderr (the CLI keeps stdout for the result): the API keeps
    both quiet. What was said is dropped; refusals still raise."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
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
    layer: a module or object with ``forward``/``backward`` (as ``--impl``), or the
    ``forward=``/``backward=`` keywords (with a layer name: your implementation of that
    layer, whose forward is also compared with ours). ``tensors``: name -> array or nested
    list (omitted: the layer's default spec; an omitted bias is zeros). The keywords are the
    CLI's options (``max_memory`` in MB); ``grad_output`` defaults to one drawn from ``seed``."""
    with _silent():
        spec = _spec(
            layer, tensors, options=options, grad_output=grad_output, forward=forward,
            backward=backward, seed=seed, dtype=dtype, max_elements=max_elements,
        )  # fmt: skip
        return _check(spec, method, eps, atol, rtol, mode, samples, coloring, max_memory,
                      budget, top, grads)  # fmt: skip


def _check(spec: Spec, *args: Any) -> Report:
    opts = _options(*args, spec)
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

    if isinstance(model, (str, Path)):
        return load_network(str(model), dtype=dtype, seed=seed, max_elements=max_elements)
    if not isinstance(model, Mapping):
        raise OptionError(f"expected a model file or mapping, got {type(model).__name__}",
                          source="model")  # fmt: skip
    doc = dict(model)

    def own(entry: Any) -> Any:
        if isinstance(entry, Mapping) and "residual" in entry:
            return {**entry, "residual": [own(e) for e in entry["residual"]]}
        if isinstance(entry, Mapping) and "impl" in entry \
                and not isinstance(entry["impl"], (str, Path)):  # fmt: skip
            return {**entry, "impl": _impl(entry["impl"], None, None)}
        return dict(entry) if isinstance(entry, Mapping) else entry

    if isinstance(doc.get("network"), list):
        doc["network"] = [own(e) for e in doc["network"]]
    if isinstance(doc.get("loss"), Mapping):
        doc["loss"] = own(doc["loss"])
    return build_network(doc, base=Path.cwd(), source="<model>", dtype=dtype, seed=seed,
                         max_elements=max_elements)  # fmt: skip


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

    with _silent():
        net = _network(model, seed, dtype, max_elements)
        opts = _options(method, eps, atol, rtol, mode, samples, coloring, max_memory, budget,
                        top, grads, net.spec)  # fmt: skip
        return NetworkReport(net, run(net, opts))


def compute_network(
    model: Any, *, seed: int | None = None, dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Computation:  # fmt: skip
    """``gradcli compute net``: ``.output``, ``.gradients`` (``"X"``, ``"fc1.W"`` ...) and
    ``.intermediates`` (every boundary ``"fc1.out"`` and its gradient ``"dfc1.out"``)."""
    with _silent():
        return _run_compute(_network(model, seed, dtype, max_elements).spec)


def _is_network(spec: str | Path, layer: str | None) -> bool:
    if layer is not None or str(spec) == "-":
        return layer == "net"
    from gradcli.files.reading import parse_yaml, read_spec_text

    try:
        text, source, _ = read_spec_text(str(spec))
        doc = parse_yaml(text, source=source, max_elements=DEFAULT_MAX_ELEMENTS)
    except GradcliError:
        return False  # load_spec says what is wrong with it
    return isinstance(doc, dict) and "network" in doc


def check_spec(
    spec: str | Path,
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
    if _is_network(spec, layer):
        if impl is not None or forward is not None or backward is not None:
            raise OptionError("a network's own layers go in its entries (impl: FILE.py)",
                              source="impl")  # fmt: skip
        return check_network(  # type: ignore[return-value]
            spec, method=method, eps=eps, atol=atol, rtol=rtol, mode=mode, samples=samples,
            coloring=coloring, max_memory=max_memory, budget=budget, top=top, grads=grads,
            seed=seed, dtype=dtype, max_elements=max_elements,
        )
    with _silent():
        code = _impl(impl, forward, backward)
        s = load_spec(
            layer, str(spec), dtype=dtype, seed=seed, impl=code, max_elements=max_elements
        )
        return _check(s, method, eps, atol, rtol, mode, samples, coloring, max_memory,
                      budget, top, grads)  # fmt: skip


def assert_gradients(*args: Any, **kwargs: Any) -> Report:
    """``check(...)`` for tests: raises AssertionError with the report's table when a
    gradient does not match; returns the report otherwise."""
    report = check(*args, **kwargs)
    if not report.passed:
        raise AssertionError(str(report))
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
    with _silent():
        spec = _spec(
            layer, tensors, options=options, grad_output=grad_output, forward=forward,
            backward=backward, seed=seed, dtype=dtype, max_elements=max_elements,
        )  # fmt: skip
        return _run_compute(spec)


__all__ += ["GradcliError"]
