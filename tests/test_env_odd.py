"""Outside test t15 (ENV1, HELPFULL): a COLUMNS past an index-sized integer, and a help page into
a full disk, were internal errors (exit 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_huge_columns_is_read_as_wide(cli):
    result = cli("check", "linear", env={"COLUMNS": "9" * 20})
    assert result.exit_code == 0, result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_help_into_a_full_disk_is_one_line_exit_2():
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "gradcli", "check", "--help"], stdout=full,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "gradcli: error: <stdout>: cannot write the result: No space left on device"
    ]
