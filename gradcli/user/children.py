"""The names of the user's files that a child process can import again. multiprocessing's
"spawn" pickles the user's functions by module name and its child imports that module anew: a
file imported under its own stem (``mine.py`` as ``mine``) is found on the ``sys.path`` the
child gets; one whose stem is no module name or means another module (``my-layer.py``,
``random.py``) is named here, ``gradcli.user.children._<n>_<its path in hex>``, and importing
that name imports this module first, whose finder reads the file's path back from the name
(under a private name of its own, its workers died on ModuleNotFoundError and the Pool
waited for them for ever: outside test t15 SPAWN1).

Light on purpose: a child imports it before anything of the user's.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from typing import Any

PREFIX = __name__ + "."
# a module of submodules: the import system asks sys.meta_path's finders for them
__path__: list[str] = []


def name_for(path: str, n: int) -> str:
    """The name of the file ``path``, its ``n``-th load in this process."""
    return f"{PREFIX}_{n}_{os.path.abspath(path).encode('utf-8', 'surrogateescape').hex()}"


def _file_of(fullname: str) -> str | None:
    if not fullname.startswith(PREFIX + "_"):
        return None
    _, _, encoded = fullname[len(PREFIX) + 1 :].partition("_")
    try:
        return bytes.fromhex(encoded).decode("utf-8", "surrogateescape")
    except ValueError:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        file = _file_of(fullname)
        if file is None or not os.path.isfile(file):
            return None
        return importlib.util.spec_from_file_location(fullname, file)


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())
