"""How well the diagnosis names the cause of bugs it was not written around (issue 16).

    python benchmarks/diagnosis.py            # every bug of tests/bugcorpus, through --impl
    python benchmarks/diagnosis.py --grads    # the same gradients as answer files (--grads)
    python benchmarks/diagnosis.py -v         # one line per bug with its hints

For every bug of the corpus: is it caught on exactly the wrong tensors (must be 100%), is its
cause named on every wrong tensor (target >= 80%), and is any hint wrong: a cause named that is
not the bug's, on a bug, on a bug outside the hypotheses, or on a correct twin (must be 0).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bugcorpus import BUGS, TWINS, Bug  # noqa: E402

import gradcli  # noqa: E402


@dataclass
class Outcome:
    bug: Bug
    failed: frozenset[str]
    causes: dict[str, list[str]]  # per failing tensor: the causes its hints name ("A or B")
    texts: dict[str, list[str]]

    @property
    def caught(self) -> bool:
        return self.failed == self.bug.wrong

    def named(self, name: str) -> bool:
        want = self.bug.expected(name)
        return want is not None and any(_names(c, want) for c in self.causes.get(name, []))

    @property
    def all_named(self) -> bool:
        return bool(self.bug.wrong) and all(self.named(n) for n in self.bug.wrong)

    @property
    def wrong_hints(self) -> list[str]:
        out = []
        for name, causes in self.causes.items():
            want = self.bug.expected(name) if name in self.bug.wrong else None
            out += [f"d{name}: {c}" for c in causes if want is None or not _names(c, want)]
        return out


def _names(cause: str, want: str) -> bool:
    """A hint names the expected cause when one of its equal alternatives ("A or B", both
    reproducing the values) is it."""
    return any(c.startswith(want) for c in cause.split(" or "))


def _causes(hint: Any) -> list[str]:
    cause = getattr(hint, "cause", None)
    return [str(cause)] if cause else []


def run(bug: Bug, answers: bool = False) -> Outcome:
    tensors = bug.tensors()
    if answers:
        comp = gradcli.compute(bug.layer, tensors, options=bug.options, forward=bug.forward,
                               backward=bug.backward, seed=0)  # fmt: skip
        report = gradcli.check(bug.layer, tensors, options=bug.options, seed=0,
                               grads=dict(comp.gradients))  # fmt: skip
    else:
        report = gradcli.check(bug.layer, tensors, options=bug.options, forward=bug.forward,
                               backward=bug.backward, seed=0)  # fmt: skip
    failed = frozenset(n for n, r in report.results.items() if not r.passed)
    causes = {n: [c for h in r.hints for c in _causes(h)] for n, r in report.results.items()}
    texts = {n: [str(h) for h in r.hints] for n, r in report.results.items() if r.hints}
    return Outcome(bug, failed, {n: c for n, c in causes.items() if c}, texts)


def measure(
    answers: bool = False, verbose: bool = False, outcome: Callable[..., Outcome] = run
) -> dict[str, Any]:
    """The corpus's summary; ``outcome``: how one bug is run (the tests pass a cached ``run``,
    having run every bug already)."""
    outcomes = [outcome(b, answers) for b in BUGS]
    twins = [outcome(b, answers) for b in TWINS]
    inside = [o for o in outcomes if o.bug.cause is not None]
    summary = {
        "bugs": len(outcomes),
        "inside": len(inside),
        "caught": sum(o.caught for o in outcomes),
        "named": sum(o.all_named for o in inside),
        "wrong_hints": sum(len(o.wrong_hints) for o in outcomes + twins),
        "twins": len(twins),
        "twins_clean": sum(not o.failed and not o.texts for o in twins),
    }
    if verbose:
        for o in outcomes + twins:
            mark = "named" if o.all_named else "-" if o.bug.cause else "outside"
            print(f"{o.bug.id:40s} caught={o.caught!s:5s} {mark:7s} "
                  f"failed={','.join(sorted(o.failed)) or '-'}")  # fmt: skip
            for w in o.wrong_hints:
                print(f"    WRONG {w}")
            for n, texts in o.texts.items():
                for t in texts:
                    print(f"    d{n}: {t}")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grads", action="store_true", help="check the bugs' gradients as answers")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    s = measure(args.grads, args.verbose)
    print(f"caught on exactly the wrong tensors: {s['caught']}/{s['bugs']} "
          f"({100 * s['caught'] / s['bugs']:.0f}%)")  # fmt: skip
    print(f"cause named: {s['named']}/{s['inside']} ({100 * s['named'] / s['inside']:.0f}%) "
          f"of the bugs inside the hypotheses; {s['bugs'] - s['inside']} outside")  # fmt: skip
    print(f"wrong hints: {s['wrong_hints']}; correct twins without a failure or hint: "
          f"{s['twins_clean']}/{s['twins']}")  # fmt: skip
    ok = s["caught"] == s["bugs"] and s["wrong_hints"] == 0 and s["twins_clean"] == s["twins"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
