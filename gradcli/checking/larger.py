"""A tensor the automatic step cannot resolve for its round-off alone, checked again at larger
steps: round-off falls as the step grows (1/h), a central difference's truncation grows with
h^2. A right y = sin(x) + 1e-9 sum(sin(w)) read "cannot resolve dw" (round-off of 1.6e-9
modelled beside a dw of 2e-9) where eps 1e-4 resolves it (outside test t60b F1).

A larger step can also step past what the gradient is made of: a bump of width 2e-4 in w
vanished from the differences at 256 times the step, and a backward leaving the bump out
passed there while the right one failed (outside test t61a F1). So the steps climb by 4, and
each one's differences must agree with the step's below within the two readings' round-off:
a term the larger step loses changes the reading by more than the smaller one's round-off
and stops the climb; a pass counts only at a step all of whose predecessors agree with it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.checking.compare import TensorResult
from gradcli.checking.prepared import Prepared

# the automatic step times these, in turn: each a check of that tensor alone
LADDER = (4.0, 16.0, 64.0, 256.0)
METHODS = ("central", "central4")  # truncation in h^2 or h^4: a one-sided one's grows in h
LARGEST = 1e-2  # relative to max(1, |x|): no step beyond (float32's automatic 5e-3 is near)
AGREE = 3.0  # two readings agree within this many times their round-off, summed


def at_larger_steps(
    p: Prepared, results: dict[str, TensorResult], numeric: dict[str, np.ndarray],
    builtin: dict[str, TensorResult], noise: dict[str, Any], rerun: Callable[..., Any],
) -> None:  # fmt: skip
    """Replace, in ``results``, ``numeric`` and ``builtin``, each tensor left unresolved for
    its round-off at the automatic step by its check at the first larger step that passes it
    and whose differences agree with every smaller step's (``noise``: each tensor's round-off
    at the automatic step, per element or its largest), saying so; ``rerun``: check() itself.
    A failure there stays "cannot resolve" (a failure too): the larger step's truncation, not
    the answer, may be its cause (a saturated attention's right dW_Q failed at 16 times the
    step)."""
    spec, opts = p.spec, p.opts
    if (opts.eps is not None or opts.atol is not None or opts.method not in METHODS
            or p.random_forward or p.mode == "probe"):  # fmt: skip
        return  # (a step the user chose is theirs; noise is no round-off)
    for name, r in list(results.items()):
        why = f"cannot resolve d{name} at this step: the round-off of its finite differences"
        if (name not in spec.tensors or r.kinks or not r.unresolved.startswith(why)
                or name not in numeric or noise.get(name) is None):  # fmt: skip
            continue
        before = np.asarray(numeric[name], dtype=np.float64)
        n0 = np.asarray(noise[name], dtype=np.float64)
        round_off = (n0.reshape(before.shape) if n0.size == before.size
                     else np.full(before.shape, float(np.max(n0, initial=0.0))))  # fmt: skip
        # (the step in automatic steps, its differences, its check and report), the last read
        below: tuple[float, np.ndarray, TensorResult | None, Any] = (1.0, before, None, None)
        tried: list[str] = []  # what the climb read, and why it stopped: said where no pass
        stopped = "it passed at none of them"
        for factor in LADDER:
            eps = p.engine.eps * factor
            if eps > LARGEST:
                stopped = f"no step past {LARGEST:g} is taken"
                break
            again = rerun(spec, dataclasses.replace(
                opts, eps=eps, grads={name: p.under_test[name]}, contract=False,
                notify=lambda message: None, progress=None))  # fmt: skip
            got = again.results.get(name)
            tried.append(f"{factor:g}")
            if got is None or got.kinks:
                stopped = f"at {factor:g} times it a kink lies within the step"
                break
            now = np.asarray(again.numeric[name], dtype=np.float64)
            step, then, passed, report = below
            # held to the smaller step's tolerance: a central difference's truncation grows
            # 16 times from one step to the next, so readings that agree within it leave the
            # smaller step's truncation a fifteenth of it; and within their round-off (a term
            # the larger step steps past changes them by more)
            judged = passed if passed is not None else got
            if not _agree(then, now, round_off / step, round_off / factor, judged.atol,
                          again.rtol):  # fmt: skip
                stopped = (f"the differences at {step:g} and {factor:g} times it disagree "
                           f"beyond the tolerance, so the truncation there is not known to be "
                           f"small")
                break
            if passed is not None and passed.passed and not passed.unresolved:
                results[name] = dataclasses.replace(passed, eps=p.engine.eps * step)
                numeric[name] = then
                if name in builtin and name in report.builtin:  # our backward's line there
                    builtin[name] = report.builtin[name]
                p.note(f"d{name}: the round-off at the automatic step (eps "
                       f"{p.engine.eps:.3g}) was not far below it; it passes at eps "
                       f"{p.engine.eps * step:.3g}, where the round-off is {step:g} times "
                       f"smaller, its differences agreeing with those of the steps 4 times "
                       f"smaller and larger (its truncation, 16 times smaller than the larger "
                       f"step's, is far below the tolerance)")
                break
            below = (factor, now, got, again)
        if results[name] is r and tried:  # not passed at a larger step: say what was read
            # (its advice, a larger --eps, led a user across a kink 5 steps away: outside
            # test t61a F3)
            results[name] = dataclasses.replace(r, unresolved=(
                f"{r.unresolved}; read again at {', '.join(tried)} times the step: {stopped}"))


def _agree(before: np.ndarray, now: np.ndarray, before_noise: np.ndarray,
           now_noise: np.ndarray, atol: float, rtol: float) -> bool:  # fmt: skip
    """Whether two readings of one gradient agree, element by element where both were read,
    within their round-off (AGREE times its sum) and the tolerance at the larger step."""
    both = np.isfinite(before) & np.isfinite(now)
    if not both.any():
        return False
    gap = np.abs(now[both] - before[both])
    allowed = AGREE * (before_noise[both] + now_noise[both]) + atol + rtol * np.abs(now[both])
    return bool(np.all(gap <= allowed))
