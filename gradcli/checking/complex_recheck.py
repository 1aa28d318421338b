"""A tensor the automatic step cannot resolve for its round-off alone, checked again by the
complex step, which subtracts nothing and so has no round-off to resolve: a right
y = sin(x) + 1e-9 sum(sin(w)) read "cannot resolve dw" (round-off of 1.6e-9 modelled beside a
dw of 2e-9) where --method complex decides it (outside test t60b F1).

Larger real steps were tried first, climbing 4 times at a time and holding each step's
differences to the next's: whatever agreement they were held to, the round-off that left the
tensor unresolved hid what only the smaller steps read. A narrow bump, a term repeating every
4 steps, a truncated reading passed off as the answer each passed there (outside tests
t61a F1, t62a F1 and F2, t63a F1 and F2); the complex step reads each of them exactly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.checking.compare import TensorResult
from gradcli.checking.prepared import Prepared
from gradcli.checking.userwork import FAR, FAR_LARGEST
from gradcli.errors import GradcliError
from gradcli.layers import REGISTRY
from gradcli.numeric.methods import EPS

REAL = ("central", "central4", "forward", "backward")  # the methods that subtract


def by_complex_step(
    p: Prepared, results: dict[str, TensorResult], numeric: dict[str, np.ndarray],
    builtin: dict[str, TensorResult], complex_ok: Callable[[str], bool],
    noise: dict[str, Any], rerun: Callable[..., Any],
) -> None:  # fmt: skip
    """Replace, in ``results``, ``numeric`` and ``builtin``, each tensor left unresolved for
    its round-off at the automatic step by its check under the complex step, where the
    forward takes complex input (``complex_ok``: not a forward computing in float32) and
    that check passes it, saying so; ``noise``: each tensor's round-off at the automatic
    step; ``rerun``: check() itself. Where it does not, the tensor stays "cannot resolve",
    its reason saying why."""
    spec, opts = p.spec, p.opts
    if (opts.eps is not None or opts.atol is not None or opts.method not in REAL
            or p.random_forward or p.mode == "probe"):  # fmt: skip
        return  # (a step the user chose is theirs; noise is no round-off)
    for name, r in list(results.items()):
        # unresolved for round-off, whichever reading said so: the tensor's, elements that
        # pass or lie only within theirs, or a measured round-off outweighing the truncation
        # at every smaller step (a linear's dW and db under an svm beside a score of 1e17
        # stayed 'cannot resolve' in a network, where the layer alone was read again:
        # outside test t68b F6)
        head = r.unresolved.split("; use a larger")[0]
        by_round_off = head.startswith(f"cannot resolve d{name} at ") and "round-off" in head
        if name not in spec.tensors or r.kinks or not by_round_off:
            continue
        if not complex_ok(name):
            continue
        try:
            again = rerun(spec, opts.within(method="complex",
                                            grads={name: p.under_test[name]}))  # fmt: skip
        except GradcliError as e:  # not complex-safe, or refused there: the step's verdict
            results[name] = dataclasses.replace(r, unresolved=(
                f"{r.unresolved}; the complex step could not read it: {e.message}"))
            continue
        got = again.results.get(name)
        if got is None or got.unresolved or not got.passed:
            # a failure there stays "cannot resolve": the complex step holds an answer to a
            # billionth of it, and a right normalization's dx of 1e-9, cancelled from terms of
            # 1 in float64, is 2e-6 off its own exact value
            if got is not None and not got.unresolved:
                results[name] = dataclasses.replace(r, unresolved=(
                    f"{r.unresolved}; the complex step, which has none, does not pass it "
                    f"either (worst d{name}{list(got.worst_index)}: {got.analytic:.6g} "
                    f"against {got.numeric:.6g})"))  # fmt: skip
            continue
        # code of yours: complex-safe? (a network of built-in layers only is, as they are)
        if REGISTRY.get(spec.layer.name) is not spec.layer and not spec.layer.builtins_only:
            unsafe = _unsafe(p, name, np.asarray(again.numeric[name], dtype=np.float64),
                             noise.get(name), rerun, r.atol)  # fmt: skip
            if unsafe:
                results[name] = dataclasses.replace(r, unresolved=f"{r.unresolved}; {unsafe}")
                continue
        results[name] = dataclasses.replace(got, method="complex")
        numeric[name] = again.numeric[name]
        if name in builtin and name in again.builtin:  # our own backward's line there too
            builtin[name] = again.builtin[name]
        p.note(f"d{name}: the round-off at the automatic step (eps {p.engine.eps:.3g}) was "
               f"not far below it; read again by the complex step, which has none: it passes "
               f"there")


# the real steps the complex step's reading is held to: FAR automatic central steps (their
# round-off that many times smaller), no larger than FAR_LARGEST, as complex_safe's (userwork)
SETTLED = 1e-3  # the real readings' truncation, at most this much of the gradient's scale
NEAR = 2.0  # the second real step: the first over this


def _unsafe(p: Prepared, name: str, read: np.ndarray, noise: Any,
            rerun: Callable[..., Any], atol: float = 0.0) -> str:  # fmt: skip
    """Why the complex step's reading of a forward of yours is not to be trusted ("" when it
    is): it must agree with real central differences at steps far larger than the automatic
    one (round-off FAR times smaller), within their round-off and the truncation the two
    real steps show. The forward's own cross-check (userwork.complex_safe) held it to the
    automatic step's differences, which the round-off that left the tensor unresolved
    swallows: an np.abs(w) term, whose imaginary part np.abs drops, was read as 0 by the
    complex step and a backward leaving it out passed."""
    if noise is None:
        return ""
    # FAR times central differences' own automatic step, whatever the method: forward
    # differences' is 7.5e-9, and 256 times it left the round-off as large as the gradient
    # (outside test t64a F2)
    central = p.engine.eps if p.opts.method == "central" else EPS ** (1 / 3)
    big = min(FAR_LARGEST, central * FAR)
    readings = []
    # (steps are powers of 2, numeric/methods.steps: a term repeating with both, K = 2 pi 2048
    # under the real part, reads 0 at each: outside test t64a F1, left open)
    for step in (big, big / NEAR):
        try:
            again = rerun(p.spec, p.opts.within(method="central", eps=step,
                                                grads={name: p.under_test[name]}))  # fmt: skip
        except GradcliError:
            return "real differences at larger steps could not be taken to confirm it"
        got = again.results.get(name)
        if got is None or got.kinks:
            return "real differences at larger steps meet a kink, and cannot confirm it"
        readings.append(np.asarray(again.numeric[name], dtype=np.float64))
    wide, near = readings
    n0 = np.asarray(noise, dtype=np.float64)
    n0 = n0.reshape(near.shape) if n0.size == near.size else np.full(near.shape, n0.max())
    round_off = n0 * (p.engine.eps / (big / NEAR))  # the nearer real step's, round-off ~ 1/h
    both = np.isfinite(read) & np.isfinite(near) & np.isfinite(wide)
    scale = float(np.max(np.abs(near[both]), initial=0.0))
    truncation = 2 * np.abs(wide - near)
    slack = 9 * round_off  # the two readings' round-off, generously
    # the two real readings must settle first: a term varying on the scale of those steps
    # (sin(3000 w).real) reads apart at each, and their gap taken for truncation let any
    # complex reading through (outside test t64a F1)
    if not np.all((truncation <= SETTLED * scale + slack)[both]):
        return ("real differences at larger steps do not settle (the forward varies on the "
                "scale of those steps), and cannot confirm the complex step's reading")
    # (real readings of exactly 0, the loss swallowing every move, confirm nothing: taken
    # for no evidence, a backward leaving out an L1 term np.abs hides from the complex step
    # passed beside a data term of 7e16: outside test t69a F1; a right svm of yours beside a
    # score of 1e17 stays 'cannot resolve', t68b F3, where --method complex is yours to ask)
    off = both & (np.abs(read - near) > truncation + slack)
    if not off.any():
        # and confirmed to the check's own tolerance: a term the complex step drops smaller
        # than what those readings can tell apart hides there (a 0.005 |w| beside a data term
        # of 1e9, its real readings' round-off 0.015: a backward leaving it out passed,
        # outside test t70a F1)
        blind = np.where(both, truncation + slack, 0.0)
        tol = atol + p.rtol * np.abs(read)
        if np.any(blind > tol):
            k = int(np.argmax(np.where(blind > tol, blind - tol, -np.inf)))
            return (f"real differences at larger steps confirm the complex step's reading of "
                    f"your forward only to {float(blind.ravel()[k]):.2g} (at flat index {k}), "
                    f"beyond the check's tolerance there ({float(tol.ravel()[k]):.2g}): a part "
                    f"of your forward the complex step cannot read (np.abs, np.real, a cast) "
                    f"could hide below that")
        return ""
    k = int(np.flatnonzero(off.ravel())[0])
    return (f"the complex step's reading of your forward disagrees with real differences at "
            f"larger steps (at flat index {k}: {read.ravel()[k]:.6g} against "
            f"{near.ravel()[k]:.6g}), so it is not trusted: a part of your forward may drop "
            f"the imaginary part (np.abs, np.real, a cast)")
