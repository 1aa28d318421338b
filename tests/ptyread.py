"""Reading what a child process wrote to a pseudo-terminal (tests that run gradcli in a real
terminal, as a user's shell would)."""

from __future__ import annotations

import os


def read_all(master: int) -> bytes:
    """Everything written to the terminal ``master`` until the child closed it; closes it."""
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out
