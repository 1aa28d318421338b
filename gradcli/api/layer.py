"""Checking and computing one layer: check, check_spec, assert_gradients, compute."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradcli.api.common import answers_of, api_call, check_options, spec_args, spec_from
from gradcli.api.network import check_network, is_model
from gradcli.api.reports import Report
from gradcli.checking.check import CheckOptions
from gradcli.checking.check import check as _run_check
from gradcli.checking.compute import Computation
from gradcli.checking.compute import compute as _run_compute
from gradcli.checking.soundness import refuse_zero_upstream
from gradcli.errors import GradcliError, OptionError
from gradcli.inputs import arguments as arg
from gradcli.inputs.spec import (
    DEFAULT_MAX_ELEMENTS,
    Spec,
    load_spec,
)  # fmt: skip
from gradcli.layers import get_layer
from gradcli.user.given import impl_of, is_name, runs_user_code
from gradcli.user.impl import for_answers


def check(
    layer: Any = None,
    tensors: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    grad_output: Any = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    data: Sequence[str] | None = None,
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
    bias is zeros). ``data``: your own layer's float tensors that are data, never
    differentiated (a loss's target), as a spec's ``data:``. The keywords are the CLI's
    options (``max_memory`` in MB); ``grad_output`` defaults to one drawn from ``seed``."""
    opts = check_options(method, eps, atol, rtol, mode, samples, coloring, max_memory, budget, top,
                    grads)  # fmt: skip
    held = _answered(grads, None if runs_user_code(layer, None, None) else layer, layer,
                     forward, backward)  # fmt: skip
    with api_call(runs_user_code(layer, forward, backward)):
        spec = spec_from(
            layer, tensors, options=options, grad_output=grad_output, forward=forward,
            backward=backward, seed=seed, dtype=dtype, max_elements=max_elements, data=data,
            answers=held,
        )  # fmt: skip
        return run_check(spec, opts, grads, held)


def _answered(grads: Any, name: Any, layer: Any, forward: Any,
              backward: Any) -> dict[str, Any] | None:  # fmt: skip
    """Your own layer with answers (grads=): its forward yours, the gradients checked the
    answers (a forward alone could not be checked against a hand-computed file: outside test
    t59b F5); a dict filled once they are read. None where no answers are checked on code of
    yours; refused for a built-in layer's name with code of yours."""
    if grads is None or not runs_user_code(layer, forward, backward):
        return None
    if name not in (None, "custom"):
        raise OptionError(GRADS_AND_IMPL, param="grads")
    return {}


GRADS_AND_IMPL = (
    "checks your gradients for a built-in layer, your implementation of it its own backward; "
    "give one of them (your own layer takes both: its forward yours, the gradients checked "
    "grads=)"
)


def run_check(spec: Spec, opts: CheckOptions, grads: Mapping[str, Any] | None,
              held: dict[str, Any] | None = None) -> Report:  # fmt: skip
    """``held``: where your own layer checked on answers reads its gradients from."""
    refuse_zero_upstream(spec)
    if grads is not None:
        opts = dataclasses.replace(opts, grads=answers_of(grads, spec))
        if held is not None:
            held.update(opts.grads)
    report = _run_check(spec, opts)
    return Report(spec, report.computation, report.numeric, report, opts.grads)


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
    if is_model(spec, layer):
        if impl is not None or forward is not None or backward is not None:
            raise OptionError("a network's own layers go in its entries (impl: FILE.py)",
                              param="impl")  # fmt: skip
        return check_network(  # type: ignore[return-value]
            spec, method=method, eps=eps, atol=atol, rtol=rtol, mode=mode, samples=samples,
            coloring=coloring, max_memory=max_memory, budget=budget, top=top, grads=grads,
            seed=seed, dtype=dtype, max_elements=max_elements,
        )
    opts = check_options(method, eps, atol, rtol, mode, samples, coloring, max_memory, budget, top,
                    grads)  # fmt: skip
    seed, dtype, max_elements = spec_args(seed, dtype, max_elements)
    held = _answered(grads, layer, impl, forward, backward)
    if layer == "custom" and not runs_user_code(impl, forward, backward):
        raise OptionError(
            "the layer 'custom' needs your forward and backward (impl=, or forward= and "
            "backward=)",
            param="impl",
        )
    with api_call():
        code = impl_of(impl, forward, backward, param="impl", forward_only=held is not None)
        if code is not None and held is not None:
            code = for_answers(code, held)
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
        if held is not None and s.layer.name != "custom":  # the spec named a built-in
            raise OptionError(GRADS_AND_IMPL, param="grads")
        return run_check(s, opts, grads, held)


def assert_gradients(
    layer: Any = None,
    tensors: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    grad_output: Any = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    data: Sequence[str] | None = None,
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
    __tracebackhide__ = True  # pytest shows the caller's line and the verdict, not this body
    report = check(
        layer, tensors, options=options, grad_output=grad_output, forward=forward,
        backward=backward, data=data, method=method, eps=eps, atol=atol, rtol=rtol, mode=mode,
        samples=samples, coloring=coloring, max_memory=max_memory, budget=budget, top=top,
        grads=grads, seed=seed, dtype=dtype, max_elements=max_elements,
    )  # fmt: skip
    if not report.passed:
        table = "".join(line.rstrip() + "\n" for line in str(report).splitlines())
        raise AssertionError(f"{report.verdict()}\n\n{table}")
    if mode is None and report.check.mode == "sample":
        # a PASS of the coordinates the budget left, said: a CI's assert_gradients passed a
        # dW1 wrong at one element of 16,384, 64 of them sampled, with nothing to see
        # (outside test t70b F2)
        import warnings

        from gradcli.errors import SampledWarning

        why = next((n for n in report.notes if n.startswith("a full check would take")), "")
        warnings.warn(
            f"gradcli: {report.spec.layer.name} passed on a sample of coordinates, not every "
            f"one: {why or 'mode=' + repr('full') + ' checks every coordinate'}",
            SampledWarning, stacklevel=2,
        )  # fmt: skip
    return report


def compute(
    layer: Any = None,
    tensors: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    grad_output: Any = None,
    forward: Callable[..., Any] | None = None,
    backward: Callable[..., Any] | None = None,
    data: Sequence[str] | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Computation:
    """The forward and analytical backward (``gradcli compute``): ``.output``,
    ``.gradients`` (name -> array) and ``.intermediates`` (attention's Q, K, V, S, A ...)."""
    with api_call(runs_user_code(layer, forward, backward)):
        spec = spec_from(
            layer, tensors, options=options, grad_output=grad_output, forward=forward,
            backward=backward, seed=seed, dtype=dtype, max_elements=max_elements, data=data,
        )  # fmt: skip
        return _run_compute(spec)
