"""Checking and computing a network: from a model file, or built in code."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradcli.api.common import answers_of, api_call, check_options, spec_args
from gradcli.api.reports import NetworkReport
from gradcli.checking.compute import Computation
from gradcli.checking.compute import compute as _run_compute
from gradcli.errors import GradcliError, OptionError
from gradcli.inputs import arguments as arg
from gradcli.inputs.spec import (
    DEFAULT_MAX_ELEMENTS,
)  # fmt: skip
from gradcli.user.given import impl_of


def load_model(model: Any, seed: int | None, dtype: str | None, max_elements: int) -> Any:
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

    def own(entry: Any, key: str) -> Any:
        if isinstance(entry, Mapping) and "residual" in entry:
            return {**entry, "residual": [own(e, f"{key}.residual[{k}]")
                                          for k, e in enumerate(entry["residual"])]}  # fmt: skip
        if isinstance(entry, Mapping) and "impl" in entry \
                and not isinstance(entry["impl"], (str, Path)):  # fmt: skip
            try:
                return {**entry, "impl": impl_of(entry["impl"], None, None, param="model")}
            except GradcliError:  # said of the entry, in what an impl takes
                raise OptionError(
                    f"{key}.impl: expected a path FILE.py, a module or object with forward "
                    f"and backward, or a module of CS231n's functions (relu_forward, ...), "
                    f"got {arg.got(entry['impl'])}", param="model") from None
        return dict(entry) if isinstance(entry, Mapping) else entry

    if isinstance(doc.get("network"), list):
        doc["network"] = [own(e, f"network[{k}]") for k, e in enumerate(doc["network"])]
    if isinstance(doc.get("loss"), Mapping):
        doc["loss"] = own(doc["loss"], "loss")
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

    opts = check_options(method, eps, atol, rtol, mode, samples, coloring, max_memory, budget, top,
                    grads)  # fmt: skip
    seed, dtype, max_elements = spec_args(seed, dtype, max_elements)
    with api_call():
        net = load_model(model, seed, dtype, max_elements)
        if grads is not None:
            opts = dataclasses.replace(opts, grads=answers_of(grads, net.spec))
        return NetworkReport(net, run(net, opts))


def compute_network(
    model: Any, *, seed: int | None = None, dtype: str | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Computation:  # fmt: skip
    """``gradcli compute net``: ``.output``, ``.gradients`` (``"X"``, ``"fc1.W"`` ...) and
    ``.intermediates`` (every boundary ``"fc1.out"`` and its gradient ``"dfc1.out"``)."""
    seed, dtype, max_elements = spec_args(seed, dtype, max_elements)
    with api_call():
        return _run_compute(load_model(model, seed, dtype, max_elements).spec)


def is_model(spec: str | os.PathLike[str], layer: str | None) -> bool:
    if layer is not None:  # (stdin, "-", is read once and kept: files/reading.py)
        return layer == "net"
    from gradcli.files.reading import parse_yaml, read_spec_text

    try:
        text, source, _ = read_spec_text(os.fspath(spec))
        doc = parse_yaml(text, source=source, max_elements=DEFAULT_MAX_ELEMENTS)
    except GradcliError:
        return False  # load_spec says what is wrong with it
    return isinstance(doc, dict) and "network" in doc
