"""Which gradients a failure at ties is theirs: a move holding a tie still moves several
tensors at once, and a wrong answer in one of them failed them all.

A relu(x W + b) on integer data with dx twice too large read '3 of 3 gradients do not match'
beside made-up numbers for a dW and a db that torch computes (outside test t65b F2): the
moves through the zero rows carried dx's error into them. A tensor failing where no kink is
met is wrong; else, where the checks so far were cheap, each failing tensor is checked again
alone (answers of it only, as a partial --grads file is). The others are then checked again
together, and if they pass there, theirs is that verdict. Rules mixed across tensors (dx from
a > 0, db from a >= 0) pass one by one and fail together: where all but one pass together,
that one is the odd rule out; else every tensor keeps its failure, as it does when the checks
would cost too much. The verdict is FAIL whichever tensors keep it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.checking.compare import TensorResult
from gradcli.checking.prepared import Prepared
from gradcli.errors import GradcliError

# the counted seconds of the checks so far, times the tensors checked again alone plus one, that
# the alone checks may take
ALONE_SECONDS = 10.0
ODD_SECONDS = 6.0  # ... and those that look for the odd rule out among them too


def _plain(r: TensorResult) -> bool:
    """Whether ``r`` fails at an element no kink is at (among its worst)."""
    kinks = set(r.kink_at)
    for w in r.worst:
        over = w.get("error_over_tolerance")
        if over is not None and over <= 1:
            continue
        flat = int(np.ravel_multi_index(tuple(w["index"]), r.shape)) if r.shape else 0
        if flat not in kinks:
            return True
    return False


def at_ties(
    p: Prepared, results: dict[str, TensorResult], numeric: dict[str, np.ndarray],
    builtin: dict[str, TensorResult], rerun: Callable[..., Any],
) -> None:  # fmt: skip
    """Replace, in ``results``, ``numeric`` and ``builtin``, the failures of tensors that pass
    checked without the tensors that fail alone (``rerun``: check() itself)."""
    opts = p.opts
    failing = [n for n, r in results.items() if not r.passed and n in p.spec.tensors]
    if (len(failing) < 2 or not opts.blame or p.random_forward or p.mode == "probe"
            or opts.chained_kinks or opts.composite_kinks
            or not any(results[n].kinks for n in failing)
            or any(results[n].unresolved or results[n].nonfinite for n in failing)):
        return  # fmt: skip

    def again(names: list[str]) -> Any:
        try:
            return rerun(p.spec, opts.within(grads={n: p.under_test[n] for n in names},
                                             blame=False))  # fmt: skip
        except GradcliError:
            return None

    # a tensor failing where no kink is met is wrong as any mismatch is: the others are
    # checked again together, once
    wrong = [n for n in failing if _plain(results[n])]
    rest = [n for n in failing if n not in wrong]
    sources: dict[str, Any] = {}
    if not wrong:  # each alone, where that is cheap: the checks so far, once per tensor
        if p.spent * (len(failing) + 1) > ALONE_SECONDS:
            return
        for n in failing:
            r = again([n])
            if r is None or n not in r.results:
                return
            sources[n] = r
        wrong = [n for n in failing if not sources[n].results[n].passed]
        rest = [n for n in failing if sources[n].results[n].passed]
        if not wrong and len(failing) > 2:
            # each right alone: rules mixed across them. Where all but one agree (dx and dW
            # from a > 0, db from a >= 0), that one is the odd one out (t67b F1); two, or
            # several ways to split them, name none
            if p.spent * (2 * len(failing) + 1) > ODD_SECONDS:
                return
            odd = []
            for n in failing:
                others = [m for m in failing if m != n]
                r = again(others)
                if r is not None and all(m in r.results and r.results[m].passed
                                         for m in others):  # fmt: skip
                    odd.append((n, r))
            if len(odd) != 1:
                return
            (n, joint), = odd
            wrong, rest = [n], [m for m in failing if m != n]
            sources = {m: joint for m in rest}
            named = ", ".join("d" + m for m in rest)
            p.note(f"{named} pass together without d{n}, and each of them alone: d{n} takes "
                   f"another rule at the ties than they do (right alone, wrong beside them)")
            _take(rest, sources, results, numeric, builtin)
            return
    if not wrong or not rest:
        return  # none fails alone (rules mixed across tensors), or each does
    if len(rest) > 1 or rest[0] not in sources:  # (one alone: its own check decided it)
        joint = again(rest)
        if joint is None or not all(n in joint.results and joint.results[n].passed
                                    for n in rest):  # fmt: skip
            return
        sources = {n: joint for n in rest}
    _take(rest, sources, results, numeric, builtin)
    named = ", ".join("d" + n for n in rest)
    wrongs = ", ".join("d" + n for n in wrong)
    # said so a student can act on it (the moves' mechanics read as an internal trace:
    # outside test t73b F3)
    one = len(rest) == 1
    p.note(f"{named} {'is' if one else 'are'} right: {'it passes' if one else 'they pass'} when "
           f"checked with {wrongs} left out. {wrongs} {'is' if len(wrong) == 1 else 'are'} "
           f"wrong on {'its' if len(wrong) == 1 else 'their'} own, and at ties shared across "
           f"tensors that error showed in {named} too; fix {wrongs} first")


def _take(names: list[str], sources: dict[str, Any], results: dict[str, TensorResult],
          numeric: dict[str, np.ndarray], builtin: dict[str, TensorResult]) -> None:  # fmt: skip
    """Each of ``names``' result, numerical gradient and built-in line from its own check."""
    for n in names:
        source = sources[n]
        results[n] = source.results[n]
        numeric[n] = source.numeric[n]
        if n in builtin and n in source.builtin:
            builtin[n] = source.builtin[n]
