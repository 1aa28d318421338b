"""A SIGTERM (or Ctrl-C) that arrives while a module's class body runs reaches the CLI wrapped:
Python turns what ``__set_name__`` raises (a dataclass field) into a RuntimeError. It read
'gradcli: internal error: RuntimeError: Error calling __set_name__ ...' and exit 3 instead of
'terminated' and 143 (a CI run's SIGTERM test, once). Twin: a RuntimeError of its own is
still an internal error."""

from __future__ import annotations

import signal

from gradcli.cli import exits, interrupt


class _Named:
    def __set_name__(self, owner, name):
        raise KeyboardInterrupt


def _wrapped():
    class Options:  # noqa: F841 - the class body's __set_name__ is the point
        causal = _Named()


def test_a_wrapped_interrupt_is_an_interrupt(monkeypatch, capsys):
    monkeypatch.setattr(interrupt, "received", lambda: signal.SIGTERM)
    assert exits._outcome(_wrapped, show_traceback=False) == 128 + signal.SIGTERM
    assert "internal error" not in capsys.readouterr().err


def test_a_runtime_error_of_its_own_is_internal(capsys):
    def broken():
        raise RuntimeError("a bug")

    assert exits._outcome(broken, show_traceback=False) == 3
    assert "internal error" in capsys.readouterr().err
