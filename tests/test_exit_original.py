"""gradcli leaves by the os._exit the process started with.

A user's call swaps in a guard that raises (their os._exit must not end gradcli). A SIGTERM
landing while such a call ran left it in place, and gradcli's own exit raised it: a traceback,
`gradcli.user.call._Exited: 143` (outside test t39a N4). Twin: with os._exit left alone the
exit code is the same.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import os
import gradcli.__main__ as m
if {patched}:
    def guard(code=0):
        raise RuntimeError("the user's guard")
    os._exit = guard
m._leave({code})
"""


@pytest.mark.parametrize("patched", [True, False])
def test_leaving_ignores_a_guard_left_in_place(patched):
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(patched=patched, code=143)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 143, r.stderr
    assert "Traceback" not in r.stderr
