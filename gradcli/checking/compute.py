"""The analytical side of a check: one forward and one backward of a spec."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gradcli.inputs.spec import Spec
from gradcli.records import record


@record
class Computation:
    """Forward and analytical backward of one spec.

    output: the layer output; gradients: {tensor name: dL/dname}, each of that tensor's shape;
    intermediates: {name: array}, e.g. attention's Q, K, V, S, A and their gradients dQ ... dA.
    """

    output: np.ndarray
    gradients: Mapping[str, np.ndarray]
    intermediates: Mapping[str, np.ndarray]


def compute(spec: Spec) -> Computation:
    layer = spec.layer
    output, cache = layer.forward(spec.tensors, spec.options)
    grads = layer.backward(spec.grad_output, cache)
    inter = {name: cache[name] for name in layer.intermediates if name in cache}  # --impl: none
    inter.update({"d" + n: grads[n] for n in layer.intermediates if n in grads})
    gradients = {n: np.asarray(grads[n]) for n in spec.grad_shapes}  # labels have none
    return Computation(output=output, gradients=gradients, intermediates=inter)
