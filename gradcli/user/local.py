"""The modules beside a user's file (``from helpers import dsq``), kept to that file alone.

Python would put a script's folder first on ``sys.path`` and cache its helper modules in
``sys.modules`` for the rest of the process. In gradcli one process may load many users' files
(the Python API in a test suite; a model file with several ``impl:`` entries), so a cached
``helpers`` of one folder would silently serve another folder's ``from helpers import ...`` and
check the wrong code. A :class:`Folder` instead lends its file the import state it expects only
while the user's code runs (the import, and every call of its functions, so an import inside a
function finds the same modules): its folder first on ``sys.path``, the modules it imported from
there in ``sys.modules``, and no other folder's module under the name of one of its files. After
each call ``sys.path`` and ``sys.modules`` are as they were.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Folder:
    """The import state of the user's file ``path``; ``enter``/``exit`` nest (a forward calling
    the backward): plain calls rather than a context manager, as a forward runs once per
    perturbed copy."""

    def __init__(self, path: Path) -> None:
        self.folder = str(path.resolve().parent)
        self.prefix = os.path.join(self.folder, "")
        self.modules: dict[str, ModuleType] = {}  # what the user's code imported from here
        self.names = _local_names(self.folder)
        self.depth = 0
        self.path: list[str] = []
        self.hidden: dict[str, ModuleType] = {}
        self.count = 0

    def owns(self, module: Any) -> bool:
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(self.prefix):
            return True
        paths = getattr(module, "__path__", None)  # a namespace package has no __file__
        try:
            return file is None and any(str(p).startswith(self.prefix) for p in paths or ())
        except Exception:  # noqa: BLE001 - an odd __path__: not ours
            return False

    def enter(self) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        self.path = list(sys.path)
        sys.path.insert(0, self.folder)
        self.hidden = {}
        for top in self.names:
            module = sys.modules.get(top)
            if module is None or module is self.modules.get(top) or self.owns(module):
                continue
            if _shadowable(top, module):  # another folder's helpers, or the caller's own
                for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                    self.hidden[name] = sys.modules.pop(name)
        for name, module in self.modules.items():  # whatever holds our names meanwhile
            held = sys.modules.get(name)
            if held is not None and held is not module:
                self.hidden[name] = held
        sys.modules.update(self.modules)
        self.count = len(sys.modules)

    def exit(self) -> None:
        self.depth -= 1
        if self.depth:
            return
        if len(sys.modules) != self.count:  # the call imported something: ours if from here
            # (sys.modules keeps insertion order: what the call imported comes after count)
            for name, module in itertools.islice(list(sys.modules.items()), self.count, None):
                if self.owns(module):
                    self.modules[name] = module
        for name in self.modules:
            sys.modules.pop(name, None)
        sys.modules.update(self.hidden)
        self.hidden = {}
        sys.path[:] = self.path

    def scoped(self, fn: F) -> F:
        """``fn`` running inside this folder's import state (its signature still readable)."""

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            self.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit()

        return run  # type: ignore[return-value]


def _local_names(folder: str) -> frozenset[str]:
    """The module names a file in ``folder`` may import from it: its .py files and packages."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return frozenset()
    names = set()
    for entry in entries:
        stem, dot, ext = entry.partition(".")
        if dot and ext in ("py", "pyc") or not dot and os.path.isdir(os.path.join(folder, entry)):
            names.add(stem)
    return frozenset(n for n in names if n.isidentifier())


def _shadowable(top: str, module: Any) -> bool:
    """Whether a cached module of a local file's name is hidden while the user's code runs: a
    helper from another folder is, but not the standard library or an installed package
    (a user's ``numpy.py`` does not replace the numpy gradcli itself runs on)."""
    if top in sys.stdlib_module_names or top == "gradcli":
        return False
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return False
    return "site-packages" not in file and "dist-packages" not in file
