"""Safe YAML with bounds: every document gradcli reads (specs, --grads answers, options) is
parsed here, so the limits on nodes, aliases and depth hold on every path.

PyYAML composes the whole node graph before anything is constructed, and an alias reuses a
node that every later reader (the element count, a JSON writer, the user's code) walks again:
a few hundred bytes of anchors can stand for 10**9 values. The composer below counts each
alias as the values of its anchor, each time it is used, and stops at a limit derived from
--max-elements, before anything is built.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, MappingEndEvent, MappingStartEvent, ScalarEvent
from yaml.nodes import MappingNode, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from gradcli.errors import SpecError, mention, one_line

INLINE_NUMBERS = 100_000  # values a YAML document may hold at most (~3 s to parse here)
OTHER_VALUES = 1_000  # keys, options, shapes: room beside the numbers --max-elements allows
MAX_DEPTH = 100  # nesting levels; an array has at most 32 axes (gradcli.npyformat.MAX_AXES)

try:
    from yaml.cyaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    _CParser = None
if _CParser is not None:  # libyaml scans and parses; composing (where the bounds are) is ours
    _PARSING: tuple[type, ...] = (_CParser,)

    def _init_parser(loader: Any, text: str) -> None:
        _CParser.__init__(loader, text)

else:  # pragma: no cover - PyYAML without libyaml
    _PARSING = (Reader, Scanner, Parser)

    def _init_parser(loader: Any, text: str) -> None:
        Reader.__init__(loader, text)
        Scanner.__init__(loader)
        Parser.__init__(loader)


def node_limit(max_elements: int | None) -> int:
    """The values (scalars, lists, mappings; an alias as its anchor's) a document may hold."""
    return min(max_elements or INLINE_NUMBERS, INLINE_NUMBERS) + OTHER_VALUES


class _BoundedComposer(Composer):
    """PyYAML's composer, counting values (aliases expanded), depth and the key path."""

    def __init__(self, limit: int, max_elements: int | None) -> None:
        super().__init__()
        self.limit, self.max_elements = limit, max_elements or INLINE_NUMBERS
        self.count = self.depth = 0
        self.sizes: dict[str, int] = {}  # anchor -> values it stands for
        self.path: list[str] = []

    def _refuse(self, event: Any, what: str) -> None:
        line = f"line {event.start_mark.line + 1}: " if event.start_mark else ""
        raise SpecError(line + what, key=key_path(self.path) or None)

    def _add(self, n: int, event: Any) -> None:
        self.count += n
        if self.count > self.limit:
            if self.max_elements < INLINE_NUMBERS:
                allowed = mention("max_elements", self.max_elements)
                why = f"{allowed} allows them plus {OTHER_VALUES:,}"
            else:
                why = (
                    f"inline YAML holds at most {INLINE_NUMBERS:,} numbers (and "
                    f"{mention('max_elements')});"
                    " larger arrays belong in .npy files"
                )
            self._refuse(
                event, f"more than {self.limit:,} YAML values (an alias counts each use): {why}"
            )

    def compose_node(self, parent: Any, index: Any) -> Any:
        # a list's item that is a mapping has keys of its own: network[3].options; numbers in
        # (nested) lists are one array's values, named by its key
        if not isinstance(index, int) or not isinstance(self.peek_event(), MappingStartEvent):
            return self._compose_node(parent, index)
        self.path.append(f"[{index}]")
        try:
            return self._compose_node(parent, index)
        finally:
            self.path.pop()

    def _compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, ScalarEvent) and event.anchor is None:  # most values: quickly
            self.get_event()
            self._add(1, event)
            self._digits(event)
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            return ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        if isinstance(event, AliasEvent):
            self._add(self.sizes.get(event.anchor, 1), event)  # in progress: a self-reference
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            self._refuse(event, f"nested more than {MAX_DEPTH} levels deep")
        before = self.count
        self._add(1, event)
        self._digits(event)
        self.depth += 1
        node = super().compose_node(parent, index)
        self.depth -= 1
        if event.anchor is not None:
            self.sizes[event.anchor] = self.count - before
        return node

    def _digits(self, event: Any) -> None:
        """Python refuses to parse integers of more than 4300 digits (deep in the constructor)."""
        value = getattr(event, "value", None)
        if value is not None and len(value) > 4000 and re.search(r"\d{4000,}", value):
            self._refuse(event, "a number with more than 4000 digits")

    def compose_mapping_node(self, anchor: Any) -> Any:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(MappingNode, None, start.implicit)
        node = MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        seen: set[tuple[str, str]] = set()
        while not self.check_event(MappingEndEvent):
            event = self.peek_event()
            key = self.compose_node(node, None)
            name = key.value if isinstance(key, ScalarNode) else "?"
            if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                # YAML would keep the last value silently: a first answer lost without a word
                if (key.tag, key.value) in seen:
                    shown = name if len(name) <= 40 else name[:37] + "..."
                    self._refuse(event, f"the key {shown!r} is given twice; give it once")
                seen.add((key.tag, key.value))
            self.path.append(name if len(name) <= 40 else name[:37] + "...")
            value = self.compose_node(node, key)
            self.path.pop()
            node.value.append((key, value))
        node.end_mark = self.get_event().end_mark
        return node


def key_path(parts: list[str]) -> str:
    """``network[0].residual[2].layer``: the path of a value as errors name its key."""
    return "".join(p if p.startswith("[") or i == 0 else "." + p for i, p in enumerate(parts))


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _Resolver(Resolver):
    """YAML 1.2's numbers (its core schema) where PyYAML reads YAML 1.1's: ``1e-3`` and
    ``-.5`` are floats (1.1: strings, so `-.5` was "expected a number, got a string"), ``010`` is
    ten (1.1: octal 8) and ``1:30`` a string (1.1: base 60, 90), ``0o17`` and ``0x1f`` as
    written. Booleans and nulls stay 1.1's."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


_Resolver.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Resolver.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),  # fmt: skip
    list("-+0123456789."),
)


class _Loader(*_PARSING, _BoundedComposer, SafeConstructor, _Resolver):  # type: ignore[misc]
    """Safe YAML (no python tags) with YAML 1.2's numbers (_Resolver)."""

    def __init__(self, text: str, limit: int, max_elements: int | None) -> None:
        _init_parser(self, text)
        _BoundedComposer.__init__(self, limit, max_elements)
        SafeConstructor.__init__(self)
        _Resolver.__init__(self)

    # libyaml's own composer (CParser) would bypass the counting one
    check_node = _BoundedComposer.check_node
    get_node = _BoundedComposer.get_node
    get_single_node = _BoundedComposer.get_single_node


def _construct_int(loader: SafeConstructor, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)  # a leading 0 is decimal (YAML 1.2)


_Loader.add_constructor(_INT, _construct_int)


def parse_yaml(text: str, *, source: str, max_elements: int | None = None) -> Any:
    """Safe YAML (no python tags, nothing constructed); errors name the line and column.
    At most ``node_limit(max_elements)`` values, aliases counted at each use."""
    loader = None
    try:
        loader = _Loader(text, node_limit(max_elements), max_elements)  # libyaml reads here
        return loader.get_single_data()
    except SpecError as e:
        raise e.at(source=source) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = e.problem or str(e)
        if mark is not None and "\t" in (text.splitlines()[mark.line:mark.line + 1] or [""])[0][
                :mark.column + 1]:  # an invisible character, named (outside test t66b F7)
            problem += " (a tab: YAML indents with spaces)"
        raise SpecError(one_line(f"invalid YAML: {where}{problem}"), source=source) from None
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an integer of > 4300 digits
        raise SpecError(one_line(f"invalid YAML: {e}"), source=source) from None
    finally:
        if loader is not None:
            loader.dispose()
