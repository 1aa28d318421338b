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

A file inside a package (its folder has ``__init__.py``: CS231n's ``cs231n/fast_layers.py``
importing ``cs231n.im2col``, ``layer_utils.py`` importing ``.layers``) is not a script: it is
imported as Python imports it as part of its package, as ``cs231n.fast_layers`` with the top
package's parent folder searchable (:func:`package_of`), under the same lending rules.
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

    def __init__(self, path: Path, root: str | None = None) -> None:
        self.folder = str(path.resolve().parent)
        # searched in this order: a package file's root (its top package's parent), then its
        # own folder (code that also runs as a script: ``from helpers import ...``)
        self.searched = [root, self.folder] if root else [self.folder]
        self.prefix = os.path.join(self.searched[0], "")
        self.modules: dict[str, ModuleType] = {}  # what the user's code imported from here
        self.names = frozenset().union(*map(_local_names, self.searched))
        self.depth = 0
        self.path: list[str] = []
        self.hidden: dict[str, ModuleType] = {}
        self.count = 0

    def owns(self, module: Any) -> bool:
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(self.prefix):
            return not _installed(file[len(self.prefix):])
        paths = getattr(module, "__path__", None)  # a namespace package has no __file__
        try:
            return file is None and any(
                str(p).startswith(self.prefix) and not _installed(str(p)[len(self.prefix):])
                for p in paths or ()
            )
        except Exception:  # noqa: BLE001 - an odd __path__: not ours
            return False

    def enter(self) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        self.path = list(sys.path)
        sys.path[:0] = self.searched
        self.hidden = {}
        for top in self.names:
            module = sys.modules.get(top)
            if module is None or module is self.modules.get(top) or self.owns(module):
                continue
            if shadowable(top, module):  # another folder's helpers, or the caller's own
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

    def adopt(self, name: str, module: ModuleType) -> None:
        """Register ``module`` as ``name`` while this folder's code runs (inside ``enter``)."""
        held = sys.modules.get(name)
        if held is not None and held is not module and name not in self.hidden:
            self.hidden[name] = held
        self.modules[name] = sys.modules[name] = module

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


def package_of(path: Path) -> tuple[str, str] | None:
    """(the folder to search, the module's dotted name) for a file inside a package, as Python
    names it when that folder is on ``sys.path`` (``python -m cs231n.fast_layers`` run there):
    the package is every enclosing folder with an ``__init__.py`` whose name Python can import;
    None for a file outside any package (a script)."""
    file = path.resolve()
    parts = [] if file.stem == "__init__" else [file.stem]
    folder = file.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        parts.insert(0, folder.name)
        folder = folder.parent
    if not parts or parts == [file.stem]:
        return None
    return str(folder), ".".join(parts)


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


def _installed(below: str) -> bool:
    """Whether a file below a user's folder belongs to an installed package (a project's own
    .venv): imported once for the process, never lent and taken back (torch cannot be imported
    twice)."""
    return "site-packages" in below or "dist-packages" in below


def shadowable(top: str, module: Any) -> bool:
    """Whether a cached module of a local file's name is hidden while the user's code runs: a
    helper from another folder is, but not the standard library or an installed package
    (a user's ``numpy.py`` does not replace the numpy gradcli itself runs on)."""
    if top in sys.stdlib_module_names or top == "gradcli":
        return False
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return False
    return "site-packages" not in file and "dist-packages" not in file
