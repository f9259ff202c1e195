"""The located YAML reader both config files use: bounds on size, nodes, nesting and encoding,
each refusal located, and plain data that remembers every key's line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import exporter.yaml_located
from exporter.yaml_located import (
    MAX_FILE_BYTES,
    MAX_NODES,
    ConfigError,
    compose_yaml,
    load_located_yaml,
    parse_located_yaml,
)


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_located_yaml(path, expand_env=False)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def test_missing_file_is_one_located_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert _errors(path) == [f"{path}:0: (file): cannot read: No such file or directory"]


# --- bounds: what the loader refuses to read or expand ------------------------------------------

SMALL = "collectors:\n  redis: {enabled: false}\n"


def test_a_52_mb_file_is_refused_unparsed_naming_the_line_where_it_passes_the_bound(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w", encoding="utf-8") as f:
        f.write("collectors:\n  redis:\n    queues:\n")
        i = 0
        while f.tell() < 52_000_000:
            f.write(f"      - queue-{i:08d}\n")
            i += 1
    head = path.read_bytes()[:MAX_FILE_BYTES]
    line = head.count(b"\n") + 1
    assert _errors(path) == [
        f"{path}:{line}: (file): the file goes past 256 KiB on this line; a config is a few KiB, "
        "so it is not parsed"
    ]


def test_the_size_bound_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    padding = MAX_FILE_BYTES - len(SMALL) - 1
    path.write_text(SMALL + "#" + "x" * (padding - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_located_yaml(path, expand_env=False).data == {
        "collectors": {"redis": {"enabled": False}}
    }
    with path.open("a") as f:
        f.write("\n")
    assert "(file): the file goes past 256 KiB" in _errors(path)[0]


@pytest.mark.parametrize("n", [MAX_NODES - 3, MAX_NODES - 2])
def test_the_node_bound_is_exact(n: int) -> None:
    # 1 mapping + 1 key + 1 sequence + n scalars: MAX_NODES exactly is read, one more refused.
    text = "x: [" + ", ".join(["1"] * n) + "]\n"
    if n + 3 <= MAX_NODES:
        assert parse_located_yaml(text, "c.yaml").data == {"x": [1] * n}
        return
    with pytest.raises(ConfigError) as info:
        parse_located_yaml(text, "c.yaml")
    assert info.value.errors == [
            f"c.yaml:1: (size): the document grows past {MAX_NODES} YAML nodes here (aliases "
            "count as every node they repeat); a config has a few hundred"
        ]

# A random document of anchored lists, each holding scalars, nested lists and aliases to earlier
# anchors: the bounded loader must refuse it exactly when the expanded tree (every alias
# repeating its whole subtree, counted by a walk of the plain composer's graph) is past a bound,
# and otherwise give the same data as yaml.safe_load.
_items = st.recursive(
    st.just("s"),
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=6,
)


@st.composite
def _aliased_documents(draw: st.DrawFn) -> str:
    lines = []
    for i in range(draw(st.integers(1, 7))):
        aliases = st.integers(0, i - 1).map(lambda j: f"*a{j}") if i else st.just("s")
        items = draw(st.lists(st.one_of(_items, aliases), max_size=5))
        lines.append(f"k{i}: &a{i} [" + ", ".join(items) + "]")
    return "\n".join(lines) + "\n"


def _expanded(node: yaml.Node, depth: int = 1) -> tuple[int, int]:
    """(nodes, depth) of the tree the graph stands for, each alias expanded."""
    nodes, deepest = 1, depth
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    for child in children:
        n, d = _expanded(child, depth + 1)
        nodes, deepest = nodes + n, max(deepest, d)
    return nodes, deepest


@settings(max_examples=300, deadline=None)
@given(_aliased_documents(), st.integers(5, 300), st.integers(2, 8))
def test_bounds_refuse_exactly_the_documents_that_expand_past_them(
    text: str, max_nodes: int, max_depth: int
) -> None:
    nodes, depth = _expanded(yaml.compose(text, Loader=yaml.SafeLoader))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exporter.yaml_located, "MAX_NODES", max_nodes)
        mp.setattr(exporter.yaml_located, "MAX_DEPTH", max_depth)
        try:
            node = compose_yaml(text, "c.yaml")
        except ConfigError as exc:
            assert nodes > max_nodes or depth > max_depth, exc.errors
            assert "(size)" in exc.errors[0]
            return
    assert nodes <= max_nodes and depth <= max_depth
    assert node is not None
    assert parse_located_yaml(text, "c.yaml").data == yaml.safe_load(text)


def test_non_utf8_and_control_characters_are_located(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    assert _errors(path) == [
        f"{path}:2: (file): byte 0xe9 in column 7 is not UTF-8; save the file as UTF-8"
    ]
    path.write_bytes(b"a: 1\n\nb: x\x07y\n")
    assert _errors(path) == [
        f"{path}:3: (syntax): invalid YAML: character #x0007 is not allowed"
    ]



# --- located data -------------------------------------------------------------------------------


def test_every_key_and_item_has_its_line_and_errors_name_them() -> None:
    doc = parse_located_yaml("a:\n  b:\n    - x\n    - y\nc: 1\n", "c.yaml")
    assert doc.data == {"a": {"b": ["x", "y"]}, "c": 1}
    assert [doc.line_of(loc) for loc in (("a",), ("a", "b"), ("a", "b", 1), ("c",))] == [1, 2, 4, 5]
    assert doc.line_of(("a", "b", 1, "deeper")) == 4  # the nearest located parent
    assert doc.error(("a", "b", 1), "no") == "c.yaml:4: a.b[1]: no"
    assert doc.error((), "no") == "c.yaml:1: (top level): no"


def test_conversion_problems_are_all_listed() -> None:
    doc = parse_located_yaml("a: 1\n? [x]\n: 2\na: 3\nb: ${NOPE}\n", "c.yaml", environ={})
    assert doc.errors == [
        "c.yaml:2: (top level): keys must be plain strings",
        "c.yaml:4: a: duplicate key (first set on line 1)",
        "c.yaml:5: b: environment variable NOPE is not set",
    ]
    with pytest.raises(ConfigError) as info:
        doc.checked()
    assert info.value.errors == doc.errors


def test_env_references_expand_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("dsn: postgresql://u:${PW}@h/db\n")
    assert load_located_yaml(path, expand_env=True, environ={"PW": "pw"}).data == {
        "dsn": "postgresql://u:pw@h/db"
    }
    assert load_located_yaml(path, expand_env=False).data == {"dsn": "postgresql://u:${PW}@h/db"}


def test_scalars_that_are_not_strings_keep_their_text() -> None:
    doc = parse_located_yaml("a: 1\nb: 0x10\nc: yes\nd: ~\ne: 2001-12-14\nf: text\ng: '7'\n",
                             "c.yaml")
    assert doc.data["b"] == 16 and doc.data["c"] is True and doc.data["d"] is None
    assert doc.texts == {("a",): "1", ("b",): "0x10", ("c",): "yes", ("d",): "",
                         ("e",): "2001-12-14"}  # strings (quoted or not) need no text


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n", "null\n"])
def test_an_empty_or_null_document_is_an_empty_mapping(text: str) -> None:
    doc = parse_located_yaml(text, "c.yaml")
    assert (doc.data, doc.errors) == ({}, [])


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_document_that_is_no_mapping_is_one_error(text: str) -> None:
    assert parse_located_yaml(text, "c.yaml").errors == [
        "c.yaml:1: (top level): the file must be a mapping of keys"
    ]
