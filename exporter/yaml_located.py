"""Reading a YAML config file within bounds into plain data that remembers each key's line.

Both config files go through here: ``--config.file`` (:mod:`exporter.config`) and
``--web.config.file`` (:mod:`exporter.web`). Every problem is one ``file:line: dotted.key:
message`` line of a :class:`ConfigError`, so the validators above only have to say what is wrong.

The bounds sit far above any real config (a few KiB, a few hundred nodes) and far below what
would cost the daemon time or memory: the file is read up to :data:`MAX_FILE_BYTES` and must be
UTF-8, and the composer refuses a document past :data:`MAX_NODES` nodes (an alias counts as every
node it repeats, so an alias bomb stops at the alias that crosses the bound) or nested deeper
than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 256 * 1024
MAX_NODES = 5_000  # YAML nodes, each alias counting as every node it stands for
MAX_DEPTH = 64

Loc = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """Every problem in a config file, each as ``file:line: key: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def format_loc(loc: Loc) -> str:
    """``("collectors", "redis", "queues", 2)`` as ``collectors.redis.queues[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# --- the bounded composer ---------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, mark: Any, message: str, what: str = "size") -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message
        self.what = what


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses, while composing, a document past the node or depth
    bounds. An alias counts as the whole subtree it names, so any walk of the tree is bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0
        self._deepest = 0
        self._expanded: dict[str, tuple[int, int]] = {}  # anchor: (nodes, height) it stands for

    def _count(self, nodes: int, depth: int, mark: Any) -> None:
        self._nodes += nodes
        self._deepest = max(self._deepest, depth)
        if self._nodes > MAX_NODES:
            raise _Refused(mark, f"the document grows past {MAX_NODES} YAML nodes here (aliases "
                                 "count as every node they repeat); a config has a few hundred")
        if depth > MAX_DEPTH:
            raise _Refused(mark, f"nested deeper than {MAX_DEPTH} levels")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        depth = self._depth + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._expanded:
                raise _Refused(event.start_mark, f"alias *{event.anchor} refers to a node that "
                                                 "contains it; a config must be a tree", "syntax")
            nodes, height = self._expanded.get(str(event.anchor), (0, 1))
            self._count(nodes, depth + height - 1, event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, depth, event.start_mark)
        before, outer_deepest = self._nodes, self._deepest
        self._depth = self._deepest = depth
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth = depth - 1
        if event.anchor is not None:
            self._expanded[event.anchor] = (self._nodes - before + 1, self._deepest - depth + 1)
        self._deepest = max(outer_deepest, self._deepest)
        return node


def read_yaml_text(path: str | Path, filename: str) -> str:
    """The file's text: at most :data:`MAX_FILE_BYTES` are read, and it must be UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"{filename}:0: (file): cannot read: {reason}"]) from None
    if len(data) > MAX_FILE_BYTES:
        line = data.count(b"\n", 0, MAX_FILE_BYTES) + 1
        raise ConfigError([f"{filename}:{line}: (file): the file goes past "
                           f"{MAX_FILE_BYTES // 1024} KiB on this line; a config is a few KiB, so "
                           "it is not parsed"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise ConfigError([f"{filename}:{line}: (file): byte 0x{data[exc.start]:02x} in column "
                           f"{column} is not UTF-8; save the file as UTF-8"]) from None


def compose_yaml(text: str, filename: str) -> yaml.Node | None:
    """The YAML node tree of ``text`` within the node and depth bounds, or a located error."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_BoundedLoader)
    except _Refused as exc:
        line = exc.mark.line + 1
        raise ConfigError([f"{filename}:{line}: ({exc.what}): {exc.message}"]) from None
    except yaml.reader.ReaderError as exc:  # a control character such as NUL
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError([f"{filename}:{line}: (syntax): invalid YAML: character "
                           f"#x{exc.character:04x} is not allowed"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and context_mark.line + 1 != line:
            problem += f" ({context} on line {context_mark.line + 1})"
        raise ConfigError([f"{filename}:{line}: (syntax): invalid YAML: {problem}"]) from None
    return node


# --- located data -----------------------------------------------------------------------------


@dataclass
class LocatedYaml:
    """A config document as plain data, with the line of every key and list item.

    ``texts`` holds, for each scalar YAML read as something other than a string (``1``,
    ``true``, a date, a null), what it reads as where a string is wanted: its text as written,
    or ``""`` for a null (Go's YAML reading of a config file). ``errors`` lists what the
    conversion itself found (duplicate keys, unset ``${VAR}``, a document that is no mapping).
    """

    filename: str
    data: dict[str, Any] = field(default_factory=dict)
    lines: dict[Loc, int] = field(default_factory=dict)
    texts: dict[Loc, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest located parent (1 for the top level)."""
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def error(self, loc: Loc, message: str) -> str:
        """One located error line for ``loc``."""
        return f"{self.filename}:{self.line_of(loc)}: {format_loc(loc)}: {message}"

    def checked(self) -> LocatedYaml:
        """This document, or :class:`ConfigError` with what the conversion found."""
        if self.errors:
            raise ConfigError(self.errors)
        return self


class _Converter:
    """Turns a node tree into plain data, noting lines (and ``${VAR}`` expansions if asked)."""

    def __init__(self, doc: LocatedYaml, environ: Mapping[str, str] | None) -> None:
        self.doc = doc
        self.environ = environ
        self._scalars = yaml.SafeLoader("")

    def _error(self, loc: Loc, line: int, message: str) -> None:
        self.doc.errors.append(f"{self.doc.filename}:{line}: {format_loc(loc)}: {message}")

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        lines = self.doc.lines
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                child = (*loc, key)
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    self._error(loc, line, "keys must be plain strings")
                    continue
                if key in out:
                    self._error(child, line, f"duplicate key (first set on line {lines[child]})")
                    continue
                lines[child] = line
                out[key] = self.convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        value = self._scalars.construct_object(node)  # type: ignore[no-untyped-call]
        if not isinstance(value, str):
            self.doc.texts[loc] = "" if value is None else str(node.value)
        elif self.environ is not None:
            value = self._expand_env(value, loc, node.start_mark.line + 1)
        return value

    def _expand_env(self, text: str, loc: Loc, line: int) -> str:
        environ = self.environ or {}

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                self._error(loc, line, f"environment variable {name} is not set")
                return ""
            return environ[name]

        return _ENV_REF.sub(repl, text)


def parse_located_yaml(
    text: str, filename: str, *, environ: Mapping[str, str] | None = None
) -> LocatedYaml:
    """``text`` as a :class:`LocatedYaml`; ``${VAR}`` references are expanded from ``environ``
    when it is given. Syntax and bound errors raise :class:`ConfigError`; what the conversion
    finds is in ``errors`` (see :meth:`LocatedYaml.checked`). An empty or null document is an
    empty mapping."""
    node = compose_yaml(text, filename)
    doc = LocatedYaml(filename)
    data = _Converter(doc, environ).convert(node, ()) if node is not None else None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        doc.errors.append(f"{filename}:1: (top level): the file must be a mapping of keys")
        data = {}
    doc.data = data
    return doc


def load_located_yaml(
    path: str | Path, *, expand_env: bool, environ: Mapping[str, str] | None = None
) -> LocatedYaml:
    """Read ``path`` within the bounds and locate it: the one way both config files are read.

    With ``expand_env``, ``${VAR}`` references are expanded from ``environ`` (default: the
    process environment). Raises :class:`ConfigError` listing every problem found so far.
    """
    filename = str(path)
    if expand_env and environ is None:
        environ = dict(os.environ)
    text = read_yaml_text(path, filename)
    return parse_located_yaml(text, filename, environ=environ if expand_env else None).checked()
