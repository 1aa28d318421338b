"""Start-up: the whole ``gradcli`` process, as a user's shell or a CI step runs it.

    python benchmarks/startup.py                         # this interpreter, 15 runs each
    python benchmarks/startup.py --python /venv-a/bin/python --python /venv-b/bin/python

Each command runs ``--runs`` times, the interpreters interleaved so that a busy machine slows
them alike; the table gives the median and the fastest run, and how many modules the command
imports. The first row, ``floor``, imports what any gradcli check needs and gradcli cannot make
faster (numpy, numpy.random, typer, rich's console and table): on a shared machine the absolute
times move by 2x from hour to hour, and the floor's row says how fast the machine was then.
Run it with gradcli installed (pip compiles its bytecode) or with a compiled tree on
PYTHONPATH: with ``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` every module is compiled
from source at every start, which measures the compiler, not gradcli.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# ``python -m gradcli`` puts the working directory first on sys.path: run from a checkout, it
# would import the source tree (compiled at every start under PYTHONDONTWRITEBYTECODE) instead
# of the interpreter's install, and time the compiler (0.55 s against 0.41 s)
NEUTRAL = tempfile.gettempdir()
FLOOR = "import numpy, numpy.random, typer, rich.console, rich.table"
COMMANDS = {
    "floor": [],
    "--help": ["--help"],
    "check linear": ["check", "linear"],
    "check linear --format json": ["check", "linear", "--format", "json"],
}

_COUNT = (
    "import runpy, sys\n"
    "sys.argv = ['gradcli', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('gradcli', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print(len(sys.modules), file=sys.stderr)\n"
)


def _time(python: str, args: list[str]) -> float:
    command = [python, "-m", "gradcli", *args] if args else [python, "-c", FLOOR]
    t = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True, cwd=NEUTRAL)
    return time.perf_counter() - t


def _modules(python: str, args: list[str]) -> int:
    code = _COUNT if args else FLOOR + "\nimport sys\nprint(len(sys.modules), file=sys.stderr)"
    proc = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, check=True,
                          cwd=NEUTRAL)  # fmt: skip
    return int(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", action="append", help="an interpreter (repeatable)")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    pythons = args.python or [sys.executable]
    print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs each")
    print(f"{'python':<40} {'command':<28} {'median s':>9} {'min s':>7} {'modules':>8}")
    for name, argv in COMMANDS.items():
        times: dict[str, list[float]] = {p: [] for p in pythons}
        for _ in range(args.runs):
            for p in pythons:  # interleaved: the machine's load falls on all alike
                times[p].append(_time(p, argv))
        for p in pythons:
            t = times[p]
            print(
                f"{p[-40:]:<40} {name:<28} {statistics.median(t):>9.3f} {min(t):>7.3f} "
                f"{_modules(p, argv):>8}"
            )


if __name__ == "__main__":
    main()
