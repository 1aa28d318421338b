"""Reading what the user gives, bounded: files, stdin, .npy/.npz headers, YAML.

This module itself is the run's list of the files it read (cheap to import: the CLI's output
writer consults it, and an output file may never be one of them)."""

from __future__ import annotations

from pathlib import Path

_read: list[Path] = []


def note_read(path: Path) -> None:
    _read.append(path)


def forget_reads() -> None:
    """A new run starts (the CLI's test runner calls main many times in one process)."""
    _read.clear()


def files_read() -> tuple[Path, ...]:
    return tuple(_read)
