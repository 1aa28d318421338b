"""A network's results as data: the compute and check JSON documents (no rich)."""

from __future__ import annotations

from typing import Any

from gradcli.checking.compute import Computation
from gradcli.checking.network import FirstWrong, NetReport, flow
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
        "fixed": {n: array_doc(a) for n, a in net.net.fixed.items()},
        "output": array_doc(comp.output),
        "grad_output": array_doc(net.spec.grad_output),
        "forward": {n: array_doc(a) for n, a in f["forward"].items()},
        "backward": {"d" + n: array_doc(g) for n, g in f["backward"].items()},
        "gradients": {n: array_doc(g) for n, g in comp.gradients.items()},
    }


def _wrong(w: FirstWrong) -> dict[str, Any]:
    return {"index": w.index, "name": w.name, "layer": w.layer, "tensor": w.tensor,
            "wrong": list(w.wrong), "judged": w.judged}


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
        "zeros_only": list(report.vacuous),
        "first_wrong": None if wrong is None else _wrong(wrong),
        "also_wrong": [_wrong(w) for w in report.also_wrong],
        "end_to_end": {
            "passed": e2e.passed, "mode": e2e.mode, "eps": e2e.eps, "atol": e2e.atol,
            "rtol": e2e.rtol, "answers": e2e.answers, "not_checked": list(e2e.not_checked),
            "notes": list(e2e.notes),
            "results": {n: result_doc(r) for n, r in e2e.results.items()},
        },
    }  # fmt: skip



# `gradcli init net`: a small CNN in CS231n's order, every key commented; it runs as written
NET_TEMPLATE = """\
# gradcli model: a small CNN
#   (conv2d, relu, maxpool2d, flatten, linear, softmax cross-entropy)
# run: gradcli check net THIS_FILE.yaml
#   (compute net: the forward and backward flow;
#    explain net: the chain and every layer's formulas at its place)
dtype: float64          # float64 or float32
seed: 0                 # seeds every generated tensor and parameter
inputs:
  # one input the network is differentiated at; the others: targets a loss names
  X: {shape: [2, 8, 8, 3]}                       # (N, H, W, C), channel-last
  y: {shape: [2], init: labels, classes: 10}     # integer class labels
network:
  # an entry: {layer: NAME, name: ..., options: {...}, tensors: {param: source}}
  #   parameters are named <name>.<tensor> (conv1.W); default names <layer><k>
  #   (relu2); a parameter given by its shape alone is drawn with He's scale;
  #   a bias may be omitted
  #   impl: mylayer.py runs your own forward and backward of that layer there
  #   {layer: custom, impl: mine.py, tensors: {...}}: a layer of your own;
  #   its integer tensors are labels; data: [target] lists float tensors
  #   never differentiated
  #   {residual: [entries]} adds the block's input to its output: y = x + f(x)
  - {layer: conv2d, name: conv1, options: {padding: 1},
     tensors: {W: {shape: [3, 3, 3, 4]}}}
  - {layer: relu}
  - {layer: maxpool2d, name: pool1, options: {size: 2}}
  - {layer: flatten}
  - {layer: linear, name: fc, tensors: {W: {shape: [10, 64]}}}
# the loss closes the chain (its output is the scalar L);
# without one, give grad_output
loss: {layer: softmax_cross_entropy, target: y}
"""
