"""Loading the config: every bad fixture gives its exact located message, secrets never print,
and ``config.example.yaml`` is valid and documents every key of the models.

Each ``tests/fixtures/config/bad/NAME.yaml`` holds one problem (``several_problems`` holds three,
to show that every error is listed); ``NAME.expected`` holds the exact lines, written by hand
from the fixture (file, line of the offending key, dotted key, message).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from exporter.config import Config, ConfigError, Window, load_config, parse_config, parse_duration

ROOT = Path(__file__).resolve().parents[3]
BAD = ROOT / "tests" / "fixtures" / "config" / "bad"
GOOD = ROOT / "tests" / "fixtures" / "config" / "good"
EXAMPLE = ROOT / "config.example.yaml"

# The secrets written into the bad fixtures; none may ever reach an error message.
SECRETS = ("S3cretDsnPw", "S3cretOneCPw", "S3cretRedisPw", "98765432123456789")
# What the fixtures' ${...} references resolve to (CSE_TEST_UNSET_PGPASSWORD stays unset).
FIXTURE_ENV = {"ONEC_PASSWORD": "S3cretOneCPw"}
# What config.example.yaml's ${...} references resolve to.
EXAMPLE_ENV = {"PGPASSWORD": "example-pg-pw", "ONEC_PASSWORD": "example-1c-pw"}

BAD_NAMES = sorted(p.stem for p in BAD.glob("*.yaml"))


def _errors(path: Path, environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def test_there_are_enough_bad_fixtures_each_with_its_expected_output() -> None:
    assert len(BAD_NAMES) >= 20
    for name in BAD_NAMES:
        assert (BAD / f"{name}.expected").is_file(), name
    assert sorted(p.stem for p in BAD.glob("*.expected")) == BAD_NAMES


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_fixture_gives_the_exact_located_errors(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BAD)  # errors name the file as it was given: NAME.yaml
    expected = (BAD / f"{name}.expected").read_text(encoding="utf-8").splitlines()
    assert expected, f"{name}.expected is empty"
    assert _errors(Path(f"{name}.yaml"), dict(FIXTURE_ENV)) == expected


def test_fixture_secrets_never_appear_in_any_error() -> None:
    texts = {n: (BAD / f"{n}.yaml").read_bytes().decode("utf-8", "replace") for n in BAD_NAMES}
    # The fixtures do carry every secret (directly or through ${ONEC_PASSWORD}) ...
    for secret in SECRETS:
        assert any(secret in t for t in texts.values()) or secret in FIXTURE_ENV.values(), secret
    for name in BAD_NAMES:
        output = "\n".join(_errors(BAD / f"{name}.yaml", dict(FIXTURE_ENV)))
        for secret in SECRETS:
            assert secret not in output, (name, secret)



@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A wrong type on a secret key: the value is not quoted back.
        ("database:\n  dsn: 5432123\n", "c.yaml:2: database.dsn: Input should be a valid string (got int)"),
        ("database:\n  dsn: {password: hunter22}\n",
         "c.yaml:2: database.dsn: Input should be a valid string (got dict)"),
        # A container on a non-secret key may still hold one.
        ("database: [postgresql://u:hunter22@h/db]\n", "c.yaml:1: database: must be a mapping of keys (got list)"),
        # URLs may carry credentials, so URL errors never quote them.
        ("collectors:\n  onec:\n    url: 'https://u:hunter22@1c:http/'\n",
         "c.yaml:3: collectors.onec.url: Input should be a valid URL, invalid port number"),
        ("collectors:\n  redis:\n    url: 'redis//:hunter22@h'\n",
         "c.yaml:3: collectors.redis.url: invalid Redis URL: use redis://host:6379/0 or rediss://..."),
        # libpq's own parse error would quote the DSN; ours does not.
        ("database:\n  dsn: \"host=h password='hunter22\"\n",
         "c.yaml:2: database.dsn: invalid PostgreSQL DSN: use postgresql://user@host:5432/dbname"),
    ],
)
def test_secret_values_are_not_echoed(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", {})
    assert info.value.errors == [expected]
    assert "hunter22" not in str(info.value)
    assert "5432123" not in str(info.value)



def test_collector_flags_revalidate_and_keep_file_secrets(tmp_path: Path) -> None:
    pw = tmp_path / "pgpass"
    pw.write_text("from-file\n")
    text = (
        f"database:\n  dsn: postgresql://u@h/db\n  password_file: {pw}\n"
        "collectors:\n  onec:\n    enabled: false\n"
    )
    config = parse_config(text, "c.yaml", {})
    flipped = config.with_collectors({"redis": False, "disk": False})
    assert flipped.collectors.enabled_names() == ["synclog", "business", "postgres", "process"]
    assert flipped.database is not None and flipped.database.password_file is not None
    assert flipped.database.password_file.get_secret_value() == "from-file"
    with pytest.raises(ConfigError) as info:
        config.with_collectors({"onec": True})
    assert info.value.errors == [
        "(flags): collectors.onec.url: required while the onec collector is enabled "
        "(or set enabled: false)"
    ]


def test_models_are_frozen() -> None:
    config = parse_config("database:\n  dsn: postgresql://u@h/db\ncollectors:\n  onec:\n"
                          "    enabled: false\n", "c.yaml", {})
    with pytest.raises(ValueError):
        config.scrape_timeout = 1.0  # type: ignore[misc]


# --- good files and config.example.yaml ------------------------------------------------------


@pytest.mark.parametrize("path", sorted(GOOD.glob("*.yaml")), ids=lambda p: p.name)
def test_good_fixtures_load(path: Path) -> None:
    load_config(path, {})


def test_example_is_valid_and_uses_env_references_for_secrets() -> None:
    config = load_config(EXAMPLE, dict(EXAMPLE_ENV))
    assert config.database is not None
    assert "example-pg-pw" in config.database.dsn.get_secret_value()
    assert config.collectors.onec.secret_password() == "example-1c-pw"
    # Without the variables the file names each missing one: secrets only come from outside.
    errors = _errors(EXAMPLE, {})
    for var in EXAMPLE_ENV:
        assert any(f"environment variable {var} is not set" in e for e in errors), var


# Keys written commented out as ``#key: value`` (no space after '#', '#' in the key's column) are
# documented alternatives (password vs password_file); prose comments are ``# text``.
_COMMENTED_KEY = re.compile(r"^(\s*)#(?=[A-Za-z_][A-Za-z0-9_]*:)", re.MULTILINE)


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model class inside ``annotation`` and whether it sits in a list."""

    def walk(t: Any, in_list: bool) -> Iterator[tuple[type[BaseModel], bool]]:
        if isinstance(t, type) and issubclass(t, BaseModel):
            yield t, in_list
        origin = typing.get_origin(t)
        for arg in typing.get_args(t):
            yield from walk(arg, in_list or origin is list)

    found = list(walk(annotation, False))
    return found[0] if found else (None, False)


def _field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], Any]
]:
    """Every key of ``model``, recursively; list elements are marked with ``[]``."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        yield path, field
        sub, in_list = _model_of(field.annotation)
        if sub is not None:
            yield from _field_paths(sub, (*path, "[]") if in_list else path)


def _lookup(data: Any, path: tuple[str, ...]) -> list[Any]:
    """The values at ``path`` (several where the path crosses a list)."""
    found = [data]
    for part in path:
        nxt: list[Any] = []
        for item in found:
            if part == "[]" and isinstance(item, list):
                nxt.extend(item)
            elif isinstance(item, dict) and part in item:
                nxt.append(item[part])
        found = nxt
    return found


def _key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], int]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            yield path, key.start_mark.line
            yield from _key_lines(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _key_lines(item, (*prefix, "[]"))


def _comment_above(lines: list[str], index: int) -> str:
    """The comment block right above line ``index`` plus a trailing comment on that line."""
    out = []
    if "# " in lines[index]:
        out.append(lines[index].split("# ", 1)[1])
    i = index - 1
    while i >= 0 and lines[i].strip().startswith("# "):
        out.append(lines[i].strip()[2:])
        i -= 1
    return " ".join(reversed(out))


_STATED_DEFAULT = re.compile(r"Default: `([^`]*)`")


def test_example_documents_every_key_with_a_comment_and_its_default() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    uncommented = _COMMENTED_KEY.sub(r"\1", text)
    node = yaml.compose(uncommented, Loader=yaml.SafeLoader)
    data = yaml.safe_load(uncommented)
    lines = uncommented.splitlines()
    key_lines: dict[tuple[str, ...], list[int]] = {}
    for path, line in _key_lines(node):
        key_lines.setdefault(path, []).append(line)

    missing, undocumented, wrong_default, checked = [], [], [], 0
    for path, field in _field_paths(Config):
        dotted = ".".join(path).replace(".[]", "[]")
        if not _lookup(data, path):
            missing.append(dotted)
            continue
        comments = [_comment_above(lines, i) for i in key_lines[path]]
        if not any("default" in c.lower() for c in comments):
            undocumented.append(dotted)
        for comment in comments:
            for stated in _STATED_DEFAULT.findall(comment):
                checked += 1
                model_default = field.get_default(call_default_factory=True)
                if _normal(yaml.safe_load(stated), model_default) != _normal(model_default, None):
                    wrong_default.append(f"{dotted}: says {stated}, is {model_default!r}")
    assert missing == [], "keys of exporter.config.Config missing from config.example.yaml"
    assert undocumented == [], "keys whose comment does not give the default"
    assert wrong_default == [], "stated defaults that are not the model's"
    assert checked >= 30  # the stated defaults really were compared


def _normal(value: Any, like: Any) -> Any:
    """``value`` in plain comparable form; a stated string duration becomes seconds when the
    model default (``like``) is a number."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Window):
        return value.label
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        inner = like[0] if isinstance(like, list) and like else None
        return [_normal(v, inner) for v in value]
    if isinstance(value, str) and isinstance(like, float) and not isinstance(like, bool):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def test_example_walk_sees_nested_models() -> None:
    """Guard for the documentation test: the walk reaches list elements and leaf keys."""
    paths = {".".join(p) for p, _ in _field_paths(Config)}
    assert {"database.dsn", "collectors.disk.dirs.[].path",
            "collectors.process.groups.[].cmdline_regex", "collectors.onec.token_file"} <= paths
