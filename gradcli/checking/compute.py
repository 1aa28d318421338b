"""The analytical side of a check: one forward and one backward of a spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.records import record


@record
class Computation:
    """Forward and analytical backward of one spec.

    output: the layer output; gradients: {tensor name: dL/dname}, each of that tensor's shape;
    intermediates: {name: array}, e.g. attention's Q, K, V, S, A and their gradients dQ ... dA;
    grad_output: the upstream gradient dL/doutput they were computed for.
    """

    output: np.ndarray
    gradients: Mapping[str, np.ndarray]
    intermediates: Mapping[str, np.ndarray]
    # the backward's call in the clock given to compute (0 with none): a user's loop backward
    # may take far longer than the cost model's call (numeric/cost.py user_backward_seconds)
    backward_seconds: float = 0.0
    # the upstream gradient the backward was given (the spec's, or drawn from its seed): what
    # answers for --grads must be computed for (outside test t38b N4)
    grad_output: np.ndarray | None = None


RETIME = (1e-4, 0.01)  # seconds: a backward's first call between these is timed twice more
# and one up to this once more: a first call paying for a warm-up (torch's autograd: 0.35 s,
# then 0.02 s) was said to be the backward's time a call, 10x (outside test t24 F13)
RETIME_ONCE = 1.0


def compute(spec: Spec, tick: Callable[[], float] | None = None) -> Computation:
    layer = spec.layer
    output, cache = layer.forward(spec.tensors, spec.options)
    started = tick() if tick is not None else 0.0
    grads = layer.backward(spec.grad_output, cache)
    seconds = tick() - started if tick is not None else 0.0
    # a first call pays for numpy's (or torch's) first uses: a cheap one is timed twice more, a
    # slower one once, the least kept (a slow one is the user's loops, not to be run again)
    again = 2 if RETIME[0] < seconds < RETIME[1] else 1 if RETIME[1] <= seconds < RETIME_ONCE else 0
    for _ in range(again):
        started = tick()  # type: ignore[misc]
        layer.backward(spec.grad_output, cache)
        seconds = min(seconds, tick() - started)  # type: ignore[misc]
    inter = {name: cache[name] for name in layer.intermediates if name in cache}  # --impl: none
    if layer.shown is not None and REGISTRY.get(layer.name) is layer:  # a cache of ours
        inter.update({k: v for k, v in layer.shown(cache).items() if k not in inter})
    inter.update({"d" + n: grads[n] for n in layer.intermediates if n in grads})
    # labels have none; a custom layer checked on a partial answer file (--grads) has the
    # answers alone (its forward's, no backward of its own)
    gradients = {n: np.asarray(grads[n]) for n in spec.grad_shapes if n in grads}
    return Computation(output=output, gradients=gradients, intermediates=inter,
                       backward_seconds=seconds,
                       grad_output=np.asarray(spec.grad_output))  # fmt: skip
