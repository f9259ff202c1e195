"""The log masker: configured secrets never reach a log line, whoever logs and however.

Covers structlog events (any field, any value type), standard-library records from libraries
(psycopg_pool, urllib3) including their exception tracebacks, in both output formats.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from exporter.config import iter_secrets, parse_config
from exporter.logs import MASK, SecretMasker, setup_logging

PASSWORD = "pg-Secret-7f3a"
TOKEN = "onec-Token-91bc"
DSN = f"postgresql://exporter:{PASSWORD}@db.example:5432/freesport"


class Opaque:
    """A non-string value whose text holds a secret (a connection object's repr, say)."""

    def __str__(self) -> str:
        return f"<conn {DSN}>"


def test_masks_every_string_and_stringified_field() -> None:
    masker = SecretMasker([DSN, PASSWORD])
    event = masker(None, "warning", {
        "event": f"cannot connect with {PASSWORD}",
        "dsn": DSN,
        "conn": Opaque(),
        "args": [PASSWORD, 1],
        "attempts": 3,
        "ratio": 0.5,
        "ok": False,
        "missing": None,
    })
    assert event == {
        "event": f"cannot connect with {MASK}",
        "dsn": MASK,  # longest first: the DSN as a whole, not just its password
        "conn": f"<conn {MASK}>",
        "args": f"['{MASK}', 1]",
        "attempts": 3,
        "ratio": 0.5,
        "ok": False,
        "missing": None,
    }


def test_update_replaces_the_secret_list_and_ignores_trivial_ones() -> None:
    masker = SecretMasker(["old-secret"])
    masker.update(["new-secret", "ab", ""])
    assert masker.mask("old-secret new-secret ab") == f"old-secret {MASK} ab"


@pytest.fixture
def logging_state() -> Iterator[None]:
    """setup_logging changes process-wide state; put it back afterwards."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    structlog.configure(**saved_config)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def _log_everything() -> None:
    log = structlog.get_logger("test")
    log.warning("collector failed", error=f"auth failed for {DSN}", token=TOKEN)
    try:
        raise ConnectionError(f"server said no to password {PASSWORD}")
    except ConnectionError:
        log.exception("collector crashed")
        logging.getLogger("psycopg.pool").exception("error connecting in pool")
    logging.getLogger("urllib3.connectionpool").warning("retrying %s with token %s", DSN, TOKEN)


@pytest.mark.parametrize("fmt", ["json", "logfmt", "console"])
def test_secrets_from_the_config_are_masked_in_every_log_line(
    fmt: str, logging_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = parse_config(
        "database:\n  dsn: postgresql://exporter:${PGPW}@db.example:5432/freesport\n"
        "collectors:\n  onec:\n    url: https://1c.example/ping\n    token: ${TOK}\n",
        "c.yaml", {"PGPW": PASSWORD, "TOK": TOKEN},
    )
    masker = setup_logging("info", fmt)
    masker.update(iter_secrets(config))  # what Exporter does at start
    _log_everything()
    err = capsys.readouterr().err
    assert PASSWORD not in err and TOKEN not in err
    # The lines are all there, with their tracebacks, just masked.
    assert err.count("Traceback (most recent call last)") == 2
    assert err.count(f"ConnectionError: server said no to password {MASK}") == 2
    assert f"auth failed for {MASK}" in err
    assert f"retrying {MASK} with token {MASK}" in err
    if fmt == "json":
        events = [json.loads(line) for line in err.splitlines()]
        assert [e["event"] for e in events] == [
            "collector failed", "collector crashed", "error connecting in pool",
            f"retrying {MASK} with token {MASK}",
        ]
        assert events[0]["token"] == MASK
        assert events[2]["logger"] == "psycopg.pool"


def test_without_the_masker_the_same_lines_would_leak(
    logging_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Control: the secrets really are in what is logged, so the test above can fail."""
    setup_logging("info", "json")  # a masker that knows no secret
    _log_everything()
    err = capsys.readouterr().err
    assert err.count(PASSWORD) >= 4 and err.count(TOKEN) == 2


def test_logfmt_is_one_line_per_event_with_time_level_and_event_first(
    logging_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", "logfmt")
    log = structlog.get_logger("test")
    log.info("listening", address=":9188", port=9188, tls=False)
    try:
        raise ValueError("two\nlines")
    except ValueError:
        log.exception("request failed", path="/metrics")
    logging.getLogger("psycopg.pool").warning("pool says %s", "hello world")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # the traceback's newlines are escaped, not printed
    stamp = r"timestamp=\d{4}-\d\d-\d\dT[\d:.]+Z"
    assert re.fullmatch(stamp + r" level=info event=listening address=:9188 port=9188 tls=false",
                        lines[0]), lines[0]
    assert re.match(stamp + r' level=error event="request failed" path=/metrics exception="'
                    r"Traceback \(most recent call last\):\\n", lines[1]), lines[1]
    assert "ValueError: two\\nlines" in lines[1]
    assert re.match(stamp + r' level=warning event="pool says hello world" logger=psycopg.pool',
                    lines[2]), lines[2]


@pytest.mark.parametrize("level", ["warn", "warning", "WARN"])
def test_warn_is_the_go_exporters_spelling_of_warning(
    level: str, logging_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(level, "json")
    log = structlog.get_logger("test")
    log.info("dropped")
    log.warning("kept")
    logging.getLogger("urllib3").info("dropped too")
    logging.getLogger("urllib3").warning("kept too")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["kept", "kept too"]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup_logging("info", "xml")


@pytest.mark.parametrize(
    ("dsn", "password"),
    [("postgresql://exporter:p%40ss-word-1@db:5432/freesport", "p@ss-word-1"),
     ("host=db port=5432 dbname=freesport user=exporter password=kv-pass-2", "kv-pass-2"),
     ("host=db dbname=freesport password='quoted pass 3'", "quoted pass 3")],
)
def test_the_password_inside_any_dsn_form_is_masked(dsn: str, password: str) -> None:
    config = parse_config(f"database:\n  dsn: \"{dsn}\"\ncollectors:\n  onec:\n"
                          "    enabled: false\n", "c.yaml", {})
    masker = SecretMasker(iter_secrets(config))
    # A library message quoting only the password (decoded) is masked too.
    assert masker.mask(f"auth failed, password {password!r}") == f"auth failed, password '{MASK}'"
