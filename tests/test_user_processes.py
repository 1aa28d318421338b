"""Outside test t15 SPAWN1: the user's code starting processes (multiprocessing), and the
signals around it. A "spawn" worker imports the user's module again by name (under gradcli's
private name each worker died and the Pool waited for ever); a forked worker starts with
Python's own handlers, not gradcli's (Pool.terminate's SIGTERM printed a gradcli traceback per
worker); and a signal ends the run even when the cleanup it starts never finishes.

The processes here are forks of the test process, and one spawn: a spawned interpreter costs a
second of CI, so only the one test that needs it starts one."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import textwrap
import time
import types

import pytest

from gradcli.cli import interrupt
from gradcli.user.impl import _script_name

SPAWNING = textwrap.dedent("""
    import multiprocessing as mp  # and no numpy: the child imports this module again

    _seen = []

    def _twice(v, out):
        out.put(2 * v)

    def forward(x):
        if not _seen:  # one child for the whole check: a spawned interpreter is slow
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            p = ctx.Process(target=_twice, args=(3.0, out))
            p.start()
            p.join(30)
            if p.exitcode != 0:
                raise RuntimeError(f"the spawned child failed: exit code {p.exitcode}")
            _seen.append(out.get(timeout=5))
        return _seen[0] / 3 * x

    def backward(grad_output, x):
        return {"x": 2 * grad_output}
    """)


@pytest.mark.skipif(sys.platform == "win32", reason="spawn's child needs a real interpreter")
def test_a_spawned_child_imports_the_users_module(cli, tmp_path, monkeypatch):
    # the child would import this test run's __main__ (pytest) first: a second saved
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    (tmp_path / "spec.yaml").write_text("tensors:\n  x: [0.5, -1.5]\n")
    (tmp_path / "spawner.py").write_text(SPAWNING)
    result = cli("check", "custom", tmp_path / "spec.yaml", "--impl", tmp_path / "spawner.py",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr[-800:]
    assert json.loads(result.stdout)["passed"] is True


@pytest.mark.parametrize(
    ("stem", "own"),
    [("spawner", True), ("my_layer2", True), ("my-layer", False), ("class", False),
     ("random", False), ("numpy", False), ("gradcli", False)],
)  # fmt: skip
def test_a_file_is_imported_under_a_name_a_child_can_import(tmp_path, stem, own):
    """Its stem, unless that is no module name or must keep meaning the standard library's or
    an imported module: then a name of gradcli's that a fresh import finds the file by (as a
    spawned child imports it), which the stem would not (the twin: my-layer is no module)."""
    file = tmp_path / f"{stem}.py"
    file.write_text("ANSWER = 42\n")
    name = _script_name(file, 7)
    assert (name == stem) == own
    if own:
        return
    assert name.startswith("gradcli.user.children._7_")
    try:
        assert importlib.import_module(name).ANSWER == 42
    finally:
        sys.modules.pop(name, None)
    with pytest.raises(ImportError):
        importlib.import_module(name.replace("_7_", "_7_00"))  # another path: no such file


def _in_a_fork(body) -> tuple[int, float]:
    """(the exit code, the seconds) of ``body()`` run in a forked child of this process, which
    leaves by os._exit with what body returns (or by itself)."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), time.monotonic() - started


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_during_a_run_has_pythons_handlers_not_gradclis():
    restore = interrupt.during_run()
    try:
        assert signal.getsignal(signal.SIGTERM) is interrupt._on_signal  # the run's own

        def child() -> int:
            ok = (signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
                  and signal.getsignal(signal.SIGINT) is signal.default_int_handler)  # fmt: skip
            return 0 if ok else 1

        assert _in_a_fork(child)[0] == 0
    finally:
        restore()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
@pytest.mark.parametrize("cleanup", ["hangs", "finishes"])
def test_a_signal_ends_the_run_even_when_its_cleanup_hangs(cleanup, monkeypatch):
    monkeypatch.setattr(interrupt, "GRACE_SECONDS", 0.1)

    def child() -> int:
        restore = interrupt.during_run()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except interrupt.Terminated:
            if cleanup == "hangs":
                time.sleep(5)  # a user's Pool.__exit__ waiting for workers that never come
            restore()  # the run is over: no deadline after it
            time.sleep(0.2)
            return 0
        return 98

    code, seconds = _in_a_fork(child)
    if cleanup == "hangs":
        assert (code, seconds < 4) == (143, True)
    else:
        assert code == 0
