"""A network's results as data: the compute and check JSON documents (no rich)."""

from __future__ import annotations

from typing import Any

from gradcli.checking.compute import Computation
from gradcli.checking.network import NetReport, flow
from gradcli.inputs.network import NetSpec
from gradcli.render.jsondoc import array_doc, header, result_doc


def _layers(net: NetSpec) -> list[dict[str, Any]]:
    return [{"index": n.index, "name": n.name, "layer": n.layer.name} for n in net.nodes]


def compute_doc(net: NetSpec, comp: Computation) -> dict[str, Any]:
    f = flow(net, comp)
    return {
        **header(net.spec),
        "layers": _layers(net),
        "tensors": {n: array_doc(a) for n, a in net.spec.tensors.items()},
        "output": array_doc(comp.output),
        "grad_output": array_doc(net.spec.grad_output),
        "forward": {n: array_doc(a) for n, a in f["forward"].items()},
        "backward": {"d" + n: array_doc(g) for n, g in f["backward"].items()},
        "gradients": {n: array_doc(g) for n, g in comp.gradients.items()},
    }


def check_doc(net: NetSpec, report: NetReport) -> dict[str, Any]:
    e2e, wrong = report.end_to_end, report.first_wrong
    return {
        **header(net.spec),
        "passed": report.passed,
        "method": e2e.method,
        "layers": [
            {"index": lc.node.index, "name": lc.node.name, "layer": lc.node.layer.name,
             "passed": lc.passed,
             "results": {n: result_doc(r) for n, r in lc.report.results.items()},
             "contract": [f.name for f in lc.report.contract if not f.passed],
             "notes": list(lc.report.notes)}
            for lc in report.layers
        ],
        "first_wrong": None if wrong is None else {
            "index": wrong.index, "name": wrong.name, "layer": wrong.layer,
            "tensor": wrong.tensor},
        "end_to_end": {
            "passed": e2e.passed, "mode": e2e.mode, "eps": e2e.eps, "atol": e2e.atol,
            "rtol": e2e.rtol, "answers": e2e.answers, "notes": list(e2e.notes),
            "results": {n: result_doc(r) for n, r in e2e.results.items()},
        },
    }  # fmt: skip

