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
from gradcli.errors import GradcliError

REAL = ("central", "central4", "forward", "backward")  # the methods that subtract


def by_complex_step(
    p: Prepared, results: dict[str, TensorResult], numeric: dict[str, np.ndarray],
    builtin: dict[str, TensorResult], complex_ok: Callable[[str], bool],
    rerun: Callable[..., Any],
) -> None:  # fmt: skip
    """Replace, in ``results``, ``numeric`` and ``builtin``, each tensor left unresolved for
    its round-off at the automatic step by its check under the complex step, where the
    forward takes complex input (``complex_ok``: not a forward computing in float32) and
    that check passes it, saying so; ``rerun``: check() itself. Where it does not, the
    tensor stays "cannot resolve", its reason saying why."""
    spec, opts = p.spec, p.opts
    if (opts.eps is not None or opts.atol is not None or opts.method not in REAL
            or p.random_forward or p.mode == "probe"):  # fmt: skip
        return  # (a step the user chose is theirs; noise is no round-off)
    for name, r in list(results.items()):
        why = f"cannot resolve d{name} at this step: the round-off of its finite differences"
        if name not in spec.tensors or r.kinks or not r.unresolved.startswith(why):
            continue
        if not complex_ok(name):
            continue
        try:
            again = rerun(spec, dataclasses.replace(
                opts, method="complex", grads={name: p.under_test[name]}, contract=False,
                notify=lambda message: None, progress=None))  # fmt: skip
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
        results[name] = dataclasses.replace(got, method="complex")
        numeric[name] = again.numeric[name]
        if name in builtin and name in again.builtin:  # our own backward's line there too
            builtin[name] = again.builtin[name]
        p.note(f"d{name}: the round-off at the automatic step (eps {p.engine.eps:.3g}) was "
               f"not far below it; read again by the complex step, which has none: it passes "
               f"there")
