"""The package's picture holds: imports run one way, stage by stage, with no cycles.

Every import counts, lazy and annotation-only ones included: a cycle hidden behind
TYPE_CHECKING or a function-level import is still a cycle for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gradcli"

# Lower stages first; a module may import its own stage and the stages before it.
STAGES = ("records", "errors", "files", "layers", "user", "inputs", "numeric", "checking", "render")
TOP = ("api", "cli", "__init__", "__main__")  # entry points: may import any stage
ONLY_RENDERING = ("rich", "typer")  # the libraries only render/ and cli/ may import


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import in the file, resolved to known modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, []) if sub in known else (node.module, [a.name]))
    return out


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        graph[name] = {m for m, _ in _imports(path, known) if m in known and m != name}
        # importing gradcli.a.b runs gradcli.a's __init__ too, but that is not a design edge
        graph[name].discard("gradcli")
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle = stack[stack.index(m) :] + [m]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_imports_point_down_the_stages():
    wrong = []
    for name, deps in _graph().items():
        stage = _stage(name)
        if stage in TOP:
            continue
        for dep in deps:
            target = _stage(dep)
            if target in TOP or STAGES.index(target) > STAGES.index(stage):
                wrong.append(f"{name} imports {dep}")
    assert not wrong, wrong


def test_only_rendering_and_cli_import_rich_or_typer():
    mods = _modules()
    wrong = []
    for name, path in mods.items():
        if _stage(name) in ("render", "cli"):
            continue
        for mod, _ in _imports(path, set(mods)):
            if mod.split(".")[0] in ONLY_RENDERING:
                wrong.append(f"{name} imports {mod}")
    assert not wrong, wrong


def test_no_module_reaches_into_another_private_names():
    mods = _modules()
    wrong = []
    for name, path in mods.items():
        for mod, names in _imports(path, set(mods)):
            if not mod.startswith("gradcli") or mod == name:
                continue
            # a package's own private helpers (layers/_conv.py) serve that package only
            same_pkg = mod.rsplit(".", 1)[0] == name.rsplit(".", 1)[0]
            private_mod = any(p.startswith("_") and p != "__init__" for p in mod.split("."))
            if private_mod and not same_pkg:
                wrong.append(f"{name} imports the private module {mod}")
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            wrong += [f"{name} imports {mod}.{n}" for n in private]
    assert not wrong, wrong
