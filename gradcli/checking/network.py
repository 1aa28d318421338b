"""The check of a network: every layer's backward at its place, the whole chain end to end, and
the verdict naming the first wrong backward.

1. Local checks: each layer's backward at its real input with the real upstream gradient, as a
   single-layer check (coloring, incremental evaluation, contract and all).
2. End to end: the chained gradients of the input and every parameter against finite
   differences of the whole network (full within the budget, else sampled: the report says).
3. Walking from the output towards the input, the first layer whose local check fails is the
   culprit; the layers below it receive a wrong upstream gradient but are not blamed, because a
   backward is checked for the upstream gradient it is given, right or wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from gradcli.checking.check import CheckOptions, check
from gradcli.checking.compute import Computation, compute
from gradcli.checking.report import CheckReport
from gradcli.errors import (
    GradcliError,
    InPlaceWriteError,
    OptionError,
    UserCodeError,
    in_layer,
    mention,
)
from gradcli.inputs.network import NetSpec
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.layers.chain import Node
from gradcli.numeric import cost, memory
from gradcli.numeric.engine import Engine
from gradcli.records import record

E2E_SHARE = 0.25  # of --budget: the end-to-end check of a network adds to its local checks
E2E_MIN_SAMPLES = 8


@record
class LayerCheck:
    node: Node
    spec: Spec  # the layer alone at its place: its real input and upstream gradient
    report: CheckReport

    @property
    def passed(self) -> bool:
        return self.report.passed


@record
class FirstWrong:
    """A layer whose local check fails: the first from the output (the culprit), or one
    below it that is also wrong on its own."""

    index: int
    name: str
    layer: str
    tensor: str | None  # its first failing gradient (its input's, if that failed); None: none
    # what is wrong: "backward" (its gradients or their contract), "forward" (the user's
    # forward disagrees with the built-in one, or returns the wrong dtype); () when its check
    # cannot judge its backward (``judged`` false: round-off swallows its gradients there)
    wrong: tuple[str, ...] = ("backward",)
    judged: bool = True


@record
class NetReport:
    layers: tuple[LayerCheck, ...]  # empty when --grads answers are checked end to end only
    end_to_end: CheckReport
    first_wrong: FirstWrong | None
    computation: Computation
    # the layers below the culprit whose local checks fail too: a local check is held to the
    # upstream gradient it is given, so each of these is wrong independently
    also_wrong: tuple[FirstWrong, ...] = ()
    answers: Mapping[str, np.ndarray] | None = None  # --grads: the user's, checked end to end
    # layers whose local check compared 0 with 0 at every element (a dropout keeping nothing):
    # their PASS shows their backward lets nothing through, no more
    vacuous: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.end_to_end.passed and all(lc.passed for lc in self.layers)


def local_specs(net: NetSpec, drawn: list[Node] | None = None) -> list[tuple[Node, Spec]]:
    """Each layer's own spec at its place in the network: its input as the forward computes
    it, its parameters, and the gradient its backward receives from the layer above (one drawn
    at random where that is 0 everywhere, the node appended to ``drawn``)."""
    drawn = [] if drawn is None else drawn
    spec = net.spec
    t = dict(spec.tensors)
    with np.errstate(all="ignore"):
        _, cache = spec.layer.forward(t, spec.options)
        grads = spec.layer.backward(spec.grad_output, cache)
    out = []
    for node in net.nodes:
        tensors, _ = cache["layers"][node.name]
        arrays = {}
        for info in node.layer.tensors:
            # a fixed tensor (a loss's labels or target) is data: in the local spec too (its
            # role keeps it unperturbed), with its own dtype (labels stay integers)
            if info.name in tensors and (info.name not in node.fixed or not info.differentiable):
                kept = not info.differentiable
                a = np.array(tensors[info.name], dtype=None if kept else spec.dtype)
                a.flags.writeable = False
                arrays[info.name] = a
        g = np.array(net.net.upstream(grads, node), dtype=spec.dtype)
        if g.size > 1 and not np.any(g):
            # a dead relu or a dropout keeping nothing above it: 0 everywhere would compare 0
            # with 0 whatever its backward; any upstream gradient shows a VJP (t21 F6)
            g = _drawn_upstream(spec, node, g.shape)
            drawn.append(node)
        g.flags.writeable = False
        out.append((node, Spec(
            layer=node.layer, dtype=spec.dtype, seed=spec.seed, options=node.options,
            tensors=MappingProxyType(arrays), grad_output=g,
            source=f"{spec.source}: layer {node.index} {node.name!r}", files=spec.files,
            elements=0, max_elements=spec.max_elements,
        )))  # fmt: skip
    return out


def check_network(
    net: NetSpec, opts: CheckOptions | None = None, *, e2e_budget: float | None = None, **kw: Any
) -> NetReport:
    """Local checks, end to end, and the first wrong backward. With ``opts.grads`` (the user's
    answers for parameters and boundaries) only the end-to-end check runs, on those answers.
    ``e2e_budget``: the budget the end-to-end check's share is of (default ``opts.budget``)."""
    opts = dataclasses.replace(opts or CheckOptions(), **kw)
    layers: list[LayerCheck] = []
    drawn: list[Node] = []
    said: list[str] = []
    if opts.grads is None:
        for node, spec in local_specs(net, drawn):
            local = dataclasses.replace(opts, notify=_prefixed(opts, node), refuse_constant=False)
            try:
                report = check(spec, local)
            except GradcliError as e:
                raise _of_layer(e, node, net) from e.__cause__
            if report.passed and node not in drawn and _own_code(node, spec):
                # the chain's upstream gradient may hide a term: a softmax cross-entropy's
                # rows sum to 0, and a custom layernorm without its mean's term passed there
                # (outside test t26 F1); a backward is a VJP for every upstream gradient
                g = _drawn_upstream(spec, node, spec.grad_output.shape, again=True)
                g.flags.writeable = False
                other = dataclasses.replace(spec, grad_output=g)
                again = check(other, local)
                if not again.passed:
                    spec, report = other, again
                    said.append(f"layer {node.index} {node.name!r}: its backward matches under "
                                f"the upstream gradient the chain gives it, not under one "
                                f"drawn at random (below): the chain's hides the difference "
                                f"here (rows summing to 0, as a softmax cross-entropy's do, "
                                f"hide a missing mean term)")
            layers.append(LayerCheck(node, spec, report))
        for node in drawn:
            said.append(f"layer {node.index} {node.name!r}: its upstream gradient in the "
                        f"chain is 0 everywhere (a dead relu or a dropout keeping nothing above "
                        f"it): its backward is checked locally under one drawn at random")
    vacuous = tuple(lc.node.name for lc in layers if _zeros_only(lc))
    for lc in layers:
        if lc.node.name in vacuous:
            said.append(f"layer {lc.node.index} {lc.node.name!r}: its gradients are 0 at every "
                        f"element here, its own and the numerical ones (a dead relu, a dropout "
                        f"keeping nothing): its check compared 0 with 0, which shows its backward "
                        f"lets nothing through here, not how it scales what it lets through")
    for text in said:
        opts.notify(text)
    e2e_opts, note = end_to_end_options(net, opts, e2e_budget, sampled_locally(layers))
    # its notes said which check they are of, as a layer's are: "dX: 306 of 384 ..." named
    # neither the network's X nor a layer's (outside test t59b F3)
    e2e_opts = dataclasses.replace(e2e_opts, large_ties=all(lc.passed for lc in layers),
                                   notify=lambda m: opts.notify(f"end to end: {m}"))  # fmt: skip
    e2e = check(net.spec, e2e_opts)  # (errors of a layer's code: the chain names it)
    if note or said:
        e2e = dataclasses.replace(e2e, notes=(*((note,) if note else ()), *said, *e2e.notes))
    wrong = wrong_layers(layers)
    return NetReport(tuple(layers), e2e, wrong[0] if wrong else None,
                     e2e.computation or compute(net.spec), tuple(wrong[1:]),
                     opts.grads, vacuous)  # fmt: skip


def _of_layer(e: GradcliError, node: Node, net: NetSpec) -> GradcliError:
    """An error of a layer's own code (its impl: raised, wrote into its input, refused the
    complex step) said of that layer and the model file; others as they were."""
    ours = isinstance(e, (UserCodeError, InPlaceWriteError)) or (
        isinstance(e, OptionError) and e.param == "method" and e.message.startswith("your "))
    return in_layer(e, node.index, node.name, net.spec.source) if ours else e


def _drawn_upstream(spec: Spec, node: Node, shape: tuple[int, ...],
                    again: bool = False) -> np.ndarray:  # fmt: skip
    """An upstream gradient drawn at random for ``node`` (from the spec's seed; ``again``: the
    second draw, checking a custom layer that passed under the chain's)."""
    rng = np.random.default_rng([spec.seed or 0, node.index, *([1] if again else [])])
    return rng.standard_normal(shape).astype(spec.dtype)


def _own_code(node: Node, spec: Spec) -> bool:
    """Whether a layer's backward is the user's own, with no built-in to compare it with at
    drawn points (an ``impl:`` of a built-in is compared there), under an upstream gradient
    of more than one element (a loss's 1 only scales it)."""
    return REGISTRY.get(node.layer.name) is None and np.size(spec.grad_output) > 1


def _zeros_only(lc: LayerCheck) -> bool:
    """Whether a layer's local check compared 0 with 0 at every element of every gradient."""
    report = lc.report
    if not report.results or report.computation is None:
        return False
    for name in report.results:
        num = report.numeric.get(name) if report.numeric else None
        mine = report.computation.gradients.get(name)
        if num is None or mine is None or np.any(np.asarray(num)) or np.any(np.asarray(mine)):
            return False
    return True


def sampled_locally(layers: list[LayerCheck]) -> str:
    """The layers whose local check compared only some coordinates, with how many, or ""."""
    said = []
    for lc in layers:
        part = [r for r in lc.report.results.values() if r.mode != "full"]
        if part:
            checked = sum(r.checked for r in part)
            total = sum(int(np.prod(r.shape)) for r in part)
            said.append(f"{lc.node.name!r} ({checked:,} of {total:,} coordinates)")
    return ", ".join(said)


def end_to_end_options(
    net: NetSpec, opts: CheckOptions, budget: float | None = None, sampled: str = ""
) -> tuple[CheckOptions, str]:
    """The end-to-end check's options: every layer's contract is checked locally, so not again
    for the chain; in auto mode a full check within ``E2E_SHARE`` of the budget, else as many
    sampled coordinates per tensor as fit in it (at least ``E2E_MIN_SAMPLES``), saying so."""
    # a user's own answers (--grads) are compared even there: nothing local checked them; one
    # equal to the chained backward of built-in layers is what the layers' checks accept
    opts = dataclasses.replace(opts, contract=False, composite_kinks=opts.grads is None,
                               chained_kinks=net.spec.layer.builtins_only)
    if opts.mode != "auto" or opts.grads is not None:
        return opts, ""
    spec = net.spec
    engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output,
                    method=opts.method, eps=opts.eps,
                    max_memory=memory.copies(spec, opts.max_memory, opts.method))  # fmt: skip
    groups = {n: engine.groups_needed(n, opts.coloring) for n in spec.tensors}
    seconds = {n: engine.seconds(n, g, opts.coloring) for n, g in groups.items()}
    share = (opts.budget if budget is None else budget) * E2E_SHARE
    if sum(seconds.values()) <= share:  # full, and the detector's kinks within the share too
        return dataclasses.replace(opts, budget=share), ""
    per_coordinate = sum(seconds[n] / max(1, groups[n]) for n in groups)
    k = max(E2E_MIN_SAMPLES, min(opts.samples, int(share / max(per_coordinate, 1e-9))))
    note = (
        f"end to end: a full check would take about {cost.shown(sum(seconds.values()))} s "
        f"(over {E2E_SHARE:g} of the budget, {share:g} s): {k} sampled coordinates per tensor; "
        + (f"the local checks sampled too, of {sampled}: coordinates neither check compared "
           "are unchecked" if sampled else
           "every coordinate is checked by the layers' local checks")
        + f" ({mention('mode', 'full')} to force it)"
    )  # fmt: skip
    opts.notify(note)
    return dataclasses.replace(opts, mode="sample", samples=k), note


def wrong_layers(layers: list[LayerCheck]) -> list[FirstWrong]:
    """Every layer whose local check fails, from the output towards the input."""
    return [_wrong(lc) for lc in reversed(layers) if not lc.passed]


def _wrong(lc: LayerCheck) -> FirstWrong:
    """What a failing local check blames: the forward when the user's disagrees with the
    built-in one (or returns the wrong dtype); the backward when its gradients fail, unless
    they are the built-in layer's own (right for the layer, not for the wrong forward they
    were differenced against), or when it breaks its contract."""
    report, out = lc.report, lc.spec.output_info.name
    failed = [n for n, r in report.results.items() if not r.passed]
    broken = [f for f in report.contract if not f.passed]
    forward = (report.forward is not None and not report.forward.passed) or any(
        f.name == "dtype" and f.tensor == out for f in broken)
    backward = any(not (f.name == "dtype" and f.tensor == out) for f in broken)
    backward = backward or bool(failed) and not (forward and _builtin_backward(lc, failed))
    if report.backward is not None and not report.backward.passed:  # wrong where ours is not
        backward, failed = True, failed or list(report.backward.failed)
    tensor = lc.node.input if lc.node.input in failed else (failed or [None])[0]
    wrong = tuple(w for w, on in (("forward", forward), ("backward", backward)) if on)
    # every failure a step that cannot resolve the gradient: nothing is known to be wrong
    # (a script reading "backward" blamed a right linear layer whose dx is exactly 0)
    unjudged = (wrong == ("backward",) and not broken and bool(failed)
                and (report.backward is None or report.backward.passed)
                and all(report.results[n].unresolved and not report.results[n].nonfinite
                        for n in failed))  # fmt: skip
    if unjudged:
        return FirstWrong(lc.node.index, lc.node.name, lc.node.layer.name, tensor, (),
                          judged=False)  # fmt: skip
    return FirstWrong(lc.node.index, lc.node.name, lc.node.layer.name,
                      tensor if backward else None, wrong or ("backward",))  # fmt: skip


def _builtin_backward(lc: LayerCheck, failed: list[str]) -> bool:
    """Whether the user's failing gradients are what the built-in layer's backward gives at
    the same tensors and upstream gradient, to each result's tolerance."""
    builtin = REGISTRY.get(lc.node.layer.name)
    comp = lc.report.computation
    if builtin is None or comp is None:
        return False
    spec = lc.spec
    with np.errstate(all="ignore"):
        _, cache = builtin.forward(spec.tensors, spec.options)
        ours = builtin.backward(spec.grad_output, cache)
    for n in failed:
        r, mine = lc.report.results[n], comp.gradients.get(n)
        if mine is None or n not in ours or np.shape(ours[n]) != np.shape(mine):
            return False
        tol = r.atol + lc.report.rtol * np.abs(ours[n])
        if not np.all(np.abs(np.asarray(mine) - ours[n]) <= tol):
            return False
    return True


def _prefixed(opts: CheckOptions, node: Node) -> Any:
    return lambda message: opts.notify(f"layer {node.index} {node.name!r}: {message}")


def flow(net: NetSpec, comp: Computation) -> Mapping[str, Any]:
    """What compute shows: each boundary's activation and the gradient passed back across it."""
    acts = {n: comp.intermediates[n] for n in net.spec.layer.intermediates}
    acts[net.net.boundaries()[-1]] = comp.output
    back = {n: comp.intermediates["d" + n] for n in net.spec.layer.intermediates}
    back[net.net.boundaries()[-1]] = net.spec.grad_output
    return {"forward": acts, "backward": back}
