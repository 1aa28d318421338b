"""A tensor the automatic step cannot resolve for its round-off alone, checked again at larger
steps: round-off falls as the step grows, and a central difference's truncation grows only
with its square, so a pass there is one. A right y = sin(x) + 1e-9 sum(sin(w)) read "cannot
resolve dw" (round-off of 1.6e-9 modelled beside a dw of 2e-9) where eps 1e-4 resolves it
(outside test t60b F1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.checking.compare import TensorResult
from gradcli.checking.prepared import Prepared

# the automatic step times these, in turn: each a check of that tensor alone
LADDER = (16.0, 256.0)
METHODS = ("central", "central4")  # truncation in h^2 or h^4: a one-sided one's grows in h
LARGEST = 1e-2  # relative to max(1, |x|): no step beyond (float32's automatic 5e-3 is near)


def at_larger_steps(
    p: Prepared, results: dict[str, TensorResult], numeric: dict[str, np.ndarray],
    builtin: dict[str, TensorResult], rerun: Callable[..., Any],
) -> None:  # fmt: skip
    """Replace, in ``results``, ``numeric`` and ``builtin``, each tensor left unresolved for
    its round-off at the automatic step by its check at the first larger step that passes it,
    saying so; ``rerun``: check() itself. A failure there stays "cannot resolve" (a failure
    too): the larger step's truncation, not the answer, may be its cause (a saturated
    attention's right dW_Q failed at 16 times the step)."""
    spec, opts = p.spec, p.opts
    if (opts.eps is not None or opts.atol is not None or opts.method not in METHODS
            or p.random_forward or p.mode == "probe"):  # fmt: skip
        return  # (a step the user chose is theirs; noise is no round-off)
    for name, r in list(results.items()):
        why = f"cannot resolve d{name} at this step: the round-off of its finite differences"
        if name not in spec.tensors or r.kinks or not r.unresolved.startswith(why):
            continue
        for factor in LADDER:
            eps = p.engine.eps * factor
            if eps > LARGEST:
                break
            again = rerun(spec, dataclasses.replace(
                opts, eps=eps, grads={name: p.under_test[name]}, contract=False,
                notify=lambda message: None, progress=None))  # fmt: skip
            got = again.results.get(name)
            if got is None or got.unresolved or not got.passed:
                continue
            results[name] = got
            numeric[name] = again.numeric[name]
            if name in builtin and name in again.builtin:  # our own backward's line there too
                builtin[name] = again.builtin[name]
            p.note(f"d{name}: the round-off at the automatic step (eps {p.engine.eps:.3g}) "
                   f"was not far below it; it passes at eps {eps:.3g}, where the round-off is "
                   f"{factor:g} times smaller")
            break
