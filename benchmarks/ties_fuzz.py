"""How often a tie rule mixed across tensors passes, and a right one fails, on random tie-heavy
two-layer nets (issue 14: ties across tensors, numeric/balance.py and numeric/crossings.py).

    python benchmarks/ties_fuzz.py 0 25            # seeds 0-24 at the default budget
    python benchmarks/ties_fuzz.py 100 125 5       # seeds 100-124 at --budget 5

Each draw is tests/test_ties_mixed_hidden.py's ``_fuzzed`` (1-2 zero rows of x, x and W1 in
steps of 0.5 or 1, b1 = 0 mostly), checked with nine backward rules: one rule at relu's kink for
every tensor (``>``, ``>=``, 1/2), relu'(0) = 2 in one tensor, and masks mixed across x, W1
and b1. The oracle is the test file's bounded least squares over one slope per tied unit.
Prints each verdict that disagrees with it, then the counts (with the passes that rest partly
on ties left unverified).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_ties_mixed_hidden import _backward, _forward, _fuzzed, _valid  # noqa: E402

import gradcli  # noqa: E402

RULES = [("gt", "gt", "gt"), ("ge", "ge", "ge"), ("half", "half", "half"), ("gt", "gt", "ge"),
         ("gt", "ge", "gt"), ("ge", "gt", "gt"), ("ge", "ge", "gt"), ("two", "gt", "gt"),
         ("gt", "gt", "two")]  # fmt: skip


def main() -> None:
    lo, hi = int(sys.argv[1]), int(sys.argv[2])
    budget = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    counts = {"right": 0, "wrong": 0, "right failed": 0, "wrong passed": 0,
              "passed with ties unverified": 0}
    slowest = 0.0
    for seed in range(lo, hi):
        t, g = _fuzzed(seed)
        for rule in RULES:
            right = _valid(t, g, rule)
            start = time.perf_counter()
            r = gradcli.check(forward=_forward, backward=_backward(*rule), tensors=t,
                              grad_output=g, budget=budget)  # fmt: skip
            slowest = max(slowest, time.perf_counter() - start)
            counts["right" if right else "wrong"] += 1
            # (a PASS that rests partly on ties no piece read contradicts: "ties_unverified")
            counts["passed with ties unverified"] += r.passed and any(
                x.ties_unverified for x in r.results.values())
            if r.passed != right:
                counts["right failed" if right else "wrong passed"] += 1
                print(f"seed {seed} {','.join(rule)}: oracle {'right' if right else 'wrong'}, "
                      f"{r.verdict()[:160]}", flush=True)
    print(", ".join(f"{k} {v}" for k, v in counts.items()) + f"; slowest check {slowest:.1f} s")


if __name__ == "__main__":
    main()
