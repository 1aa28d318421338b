"""What a check will cost, and what --budget makes of it.

Predicted from sizes (numeric/cost.py), never timed: the same spec and options give the same
decision and byte-identical JSON. A tensor is sampled only where its sample is predicted to be
cheaper than checking every coordinate: a sample moves the sampled coordinates of one color
together, so it costs the colors it touches, and a sample of a conv2d's X that touches all
of its colors costs what the full check costs (outside test F7: one forward per sampled
coordinate took 42 s where the full check took 17 s).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from gradcli.checking import contract, userwork
from gradcli.errors import mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.numeric import cost
from gradcli.numeric.engine import Engine
from gradcli.numeric.methods import MIRRORS
from gradcli.numeric.sampling import sample_coordinates
from gradcli.numeric.stacking import point_calls
from gradcli.records import record


@record
class Estimate:
    """The predicted cost of one tensor's numerical gradient, of every coordinate or a sample."""

    seconds: float  # all of it: the differences, the kinks' rechecks, the other side's
    groups: int  # perturbation groups (the progress bar's steps)
    kink_seconds: float = 0.0  # of ``seconds``: the one-sided rechecks of declared kinks
    kinks: int = 0  # the coordinates rechecked
    # of ``kink_seconds``: a sample's ties' members outside it, found, rechecked and tied in
    # (checking/across.py), planned here so that the check does not stop them short
    partners: float = 0.0


def declares_kinks(engine: Engine) -> bool:
    """Whether the engine's layer says where its kinks are: a built-in, or a user's
    implementation of one whose forward agreed with it (else the detector)."""
    if engine.kink_map() is None:
        return False
    return REGISTRY.get(engine.layer.name) is engine.layer or engine.declared_kinks is not None


def smooth(engine: Engine) -> bool:
    """Whether the engine's layer has no kink anywhere: a built-in declaring none (its forward
    is ours: a kink read there is round-off, a confident loss's staircase), or a network of
    them (Layer.smooth). No detector, no other side's differences."""
    layer = engine.layer
    if layer.smooth or engine.declared_smooth:
        return True
    return (REGISTRY.get(layer.name) is layer and layer.kinks is None
            and layer.maxima is None)  # fmt: skip


def estimate(
    engine: Engine, name: str, method: str, coloring: bool, coords: np.ndarray | None = None
) -> Estimate:
    """The predicted cost of ``name``'s numerical gradient: of every coordinate, or of
    ``coords`` (a sample), grouped as the engine groups them."""
    groups = engine.groups_needed(name, coloring, coords)
    seconds = engine.seconds(name, groups, coloring, coords)
    declared = declares_kinks(engine)
    # the one-sided rechecks of the coordinates whose stencil meets a declared kink are part
    # of the check: a relu before a max-pool ties thousands of windows at 0
    extra, met, partners = 0.0, 0, 0.0
    if declared:
        from gradcli.numeric import kinkplan  # LAZY: see ARCHITECTURE.md, "Start-up"

        extra, met = kinkplan.recheck_seconds(engine, name, coords, coloring)
        # a sample's ties reach beyond it: their members are found and rechecked too, and the
        # sample is chosen on what that costs (a max-pool's at integer ties, counted 0.6 s
        # without it, ran 16 s where the full check ran 1.2 s: outside test t17 F5, F6)
        if coords is not None and met:
            partners = kinkplan.partners_seconds(engine, name, coords, coloring)
            extra += partners
    seconds += extra
    if method in MIRRORS and not declared and not smooth(engine):  # the other side's
        seconds *= 2
    if method == "complex" and not engine.layer.broadcasts and name in engine.t64:
        # a user's forward held to central differences where the complex step read it
        # (userwork.complex_agrees)
        # (colored as the complex step is: every coordinate of linear's W one at a time was
        # counted 1,786 s at hidden 512 and sampled, where it takes seconds: t52a F2)
        seconds += cost.copies_seconds(engine, 2 * groups, real=True)
    return Estimate(seconds, groups, extra, met, partners)


def calls_before(
    spec: Spec, engine: Engine, method: str, run_contract: bool,
    agreement: userwork.ForwardAgreement | None, backward: object,
) -> float:  # fmt: skip
    """Predicted seconds of the whole calls a check makes of the layer before its numerical
    gradients, counted as the rest is: the analytical side (a forward and a backward), the
    engine's forward at the point (a user's up to 4 + 3 per floating tensor times: its timing
    and the precision it computes in, stacking.point_calls), the backward's contract (and the
    digests of a user's cache), the check's own work on every element, for ``--impl`` of a
    built-in the user's forward and backward at the drawn points beside the built-in's
    (checking/userwork.py), and the complex step's safety check of a user's forward. They
    run whatever the mode: a sample cannot save them, but they are part of what --budget
    bounds. ``agreement``, ``backward``: what the drawn
    points found (None where they were not taken)."""
    user = not spec.layer.broadcasts
    forwards, backwards = 1 + point_calls(spec.layer, engine.t64), 1
    digests = 0.0
    if run_contract:
        forwards, backwards = forwards + contract.CALLS[0], backwards + contract.CALLS[1]
        if user:  # and once the differences are read (contract.still_deterministic)
            forwards += contract.AFTER_CALLS
        if REGISTRY.get(spec.layer.name) is not spec.layer:  # a user's cache, digested twice
            digests = cost.digest_seconds(engine, contract.DIGESTS)
    ours = 0.0  # the built-in's own calls beside a user's: no guard around them
    if agreement is not None:
        # all of them, or up to the first that disagreed (at most all)
        points = len(agreement.points) or (
            0 if agreement.point is None else userwork.drawn_count(spec))
        forwards += points
        # and the built-in's own round-off, where measured (userwork.builtin_roundoff)
        ours = cost.calls_seconds(engine, 1 + points + agreement.roundoff_calls, overhead=False)
        if backward is not None:  # each backward right after the user's forward at its point
            forwards, backwards = forwards + points, backwards + points
            ours += cost.calls_seconds(engine, points, points, overhead=False)
    seconds = cost.calls_seconds(engine, forwards, backwards, overhead=user) + ours + digests
    seconds += cost.checked_seconds(engine)  # the contract's deviations, the comparison
    seconds += cost.CHECK_SECONDS
    if user and method == "complex":  # userwork.complex_safe: a few coordinates both ways
        constants = spec.layer.constants(spec.shapes, spec.options)
        picks = sum(min(userwork.SAFE_PICKS, a.size) for n, a in spec.tensors.items()
                    if n not in constants)  # fmt: skip
        # its central engine's point
        seconds += cost.calls_seconds(engine, point_calls(spec.layer, engine.t64), overhead=True)
        seconds += cost.copies_seconds(engine, 3 * picks)  # one complex, two central each
    return seconds


def ties_across_tensors(
    estimates: Mapping[str, Estimate], engine: Engine, tensors: Mapping[str, np.ndarray]
) -> dict[str, Estimate]:
    """``estimates`` with the copies of the ties across tensors (numeric/joint.py) counted,
    on the last of two or more of the layer's tensors that meet kinks: all of them moved
    together, and their supports to find."""
    kinked = [n for n, e in estimates.items() if e.kinks and n in tensors]
    if len(kinked) < 2:
        return dict(estimates)
    from gradcli.numeric import joint  # LAZY

    copies = len(joint.OFFSETS) + joint.SUPPORT_POINTS * len(kinked)
    last = estimates[kinked[-1]]
    extra = cost.copies_seconds(engine, copies, real=True)
    return {**estimates, kinked[-1]: dataclasses.replace(last, seconds=last.seconds + extra)}


def draw(
    under_test: Mapping[str, np.ndarray], samples: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The sampled coordinates of each tensor, in order, from one generator (the spec's seed):
    the same ones whether or not the check then samples them all."""
    return {n: sample_coordinates(a.shape, samples, a, rng) for n, a in under_test.items()}


def over_budget(
    full: Mapping[str, Estimate], sampled: Mapping[str, Estimate], budget: float, samples: int,
    what: str = "check", before: float = 0.0,
) -> tuple[set[str], str]:  # fmt: skip
    """An automatic ``what`` (a check, a sweep) predicted over ``budget``: (the names to
    sample: those whose sample is cheaper than every coordinate, the note saying what was
    decided and what it costs). ``before``: the calls made whatever is sampled
    (``calls_before``)."""
    whole = before + sum(e.seconds for e in full.values())
    cheaper = {n for n in full if sampled[n].seconds < full[n].seconds}
    run = before + sum((sampled if n in cheaper else full)[n].seconds for n in full)
    met = sum(e.kinks for e in full.values())
    of_kinks = (
        f", {cost.shown(sum(e.kink_seconds for e in full.values()))} s of it rechecking "
        f"{met:,} coordinates at kinks one-sidedly" if met else ""
    )  # fmt: skip
    said = f"a full {what} would take about {cost.shown(whole)} s{of_kinks} (budget {budget:g} s)"
    done = "swept" if what == "sweep" else "checked"
    if not cheaper:
        return cheaper, (
            f"{said}, and a sample of {samples} coordinates per tensor as long: {done} every "
            f"coordinate ({mention('mode', 'sample')} to force a sample)" if what == "check" else
            f"{said}, and a sample of {samples} coordinates per tensor as long: {done} every "
            "coordinate"
        )  # fmt: skip
    if len(cheaper) == len(full):
        how = f"{samples} sampled coordinates per tensor"
    else:
        how = (f"{samples} sampled coordinates of {_names(n for n in full if n in cheaper)} and "
               f"every coordinate of {_names(n for n in full if n not in cheaper)}, which a "
               "sample would not make cheaper")  # fmt: skip
    forced = f" ({mention('mode', 'full')} to force it)" if what == "check" else ""
    return cheaper, f"{said}: {done} {how}, about {cost.shown(run)} s{forced}" + _fewer(
        full, sampled, cheaper, budget, samples, before, run)


def _fewer(full: Mapping[str, Estimate], sampled: Mapping[str, Estimate], cheaper: set[str],
           budget: float, samples: int, before: float, run: float) -> str:  # fmt: skip
    """Where the sample too is over ``budget`` (a forward of 0.5 s a call: 64 coordinates a
    tensor took 74 s of a budget of 5): how many would fit, said, never chosen silently."""
    if run <= budget:
        return ""
    fixed = before + sum(full[n].seconds for n in full if n not in cheaper)
    each = sum(sampled[n].seconds for n in cheaper) / samples  # seconds a coordinate a tensor
    k = int((budget - fixed) / each) if each > 0 and budget > fixed else 0
    if 1 <= k < samples:  # a straight line through the model: ties and rechecks add to it
        return (f"; over {mention('budget')} still: each sampled coordinate costs about "
                f"{each:.2g} s beyond {cost.shown(fixed)} s of calls made whatever is sampled "
                f"(fewer {mention('samples')}, {k} or less, come nearer it)")
    return (f"; over {mention('budget')} still: the calls made whatever is sampled take about "
            f"{cost.shown(fixed)} s")


def _names(names) -> str:  # type: ignore[no-untyped-def]
    return ", ".join("d" + n for n in names)
