"""The shared failure wording: the chain a library wraps, one bounded line, secrets scrubbed."""

from __future__ import annotations

import itertools
import socket
import ssl

import requests
from hypothesis import given
from hypothesis import strategies as st
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from exporter.errors import MASK, MAX_DESCRIPTION, chain, describe, scrub

# --- chain ------------------------------------------------------------------------------------


def test_chain_follows_requests_and_urllib3_wrappers_to_the_error_that_says_what() -> None:
    """As requests raises a refused connection: ConnectionError(MaxRetryError(reason=...))."""
    refused = ConnectionRefusedError(111, "Connection refused")
    new_conn = NewConnectionError(HTTPConnection("127.0.0.1", 1), "Failed to establish")
    new_conn.__cause__ = refused
    retries = MaxRetryError(HTTPConnectionPool("127.0.0.1", 1), "/hs/ping", new_conn)
    outer = requests.ConnectionError(retries)
    assert chain(outer) == [outer, retries, new_conn, refused]


def test_chain_prefers_the_cause_to_the_context() -> None:
    cause, context = OSError("cause"), OSError("context")
    exc = RuntimeError("outer")
    exc.__cause__, exc.__context__ = cause, context
    assert chain(exc) == [exc, cause]
    exc.__cause__ = None
    assert chain(exc) == [exc, context]


def test_chain_ends_on_cycles_and_after_ten_links() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert chain(a) == [a, b]
    links = [ValueError(str(i)) for i in range(30)]
    for outer, inner in itertools.pairwise(links):
        outer.__cause__ = inner
    assert chain(links[0]) == links[:10]


def test_chain_walks_what_a_name_resolution_error_wraps() -> None:
    gai = socket.gaierror(-2, "Name or service not known")
    dns = NameResolutionError("onec.invalid", HTTPConnection("onec.invalid", 80), gai)
    dns.__cause__ = gai
    assert chain(dns)[-1] is gai


# --- describe ---------------------------------------------------------------------------------


def test_describe_is_the_type_and_the_first_line() -> None:
    assert describe(ValueError("first\nsecond")) == "ValueError: first"
    assert describe(ValueError("  padded  \n")) == "ValueError: padded"
    assert describe(TimeoutError()) == "TimeoutError"  # no dangling ': '
    assert describe(ConnectionRefusedError(111, "Connection refused")) == (
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )


def test_describe_gives_the_verify_message_of_a_certificate_failure() -> None:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                          "failed: self-signed certificate (_ssl.c:1000)")
    exc.verify_message = "self-signed certificate"
    assert describe(exc) == (
        "SSLCertVerificationError: certificate verify failed: self-signed certificate"
    )


@given(st.text())
def test_describe_is_one_bounded_line_naming_the_type(text: str) -> None:
    line = describe(ValueError(text))
    assert line.splitlines() == [line]
    assert len(line) <= MAX_DESCRIPTION
    first = (text.strip().splitlines() or [""])[0]
    assert line == ("ValueError: " + first if first else "ValueError")[:MAX_DESCRIPTION]


# --- scrub ------------------------------------------------------------------------------------

# Secrets without the mask's character: a secret made of '*' could be spelled by the masks.
SECRET = st.text(st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), min_size=1)


@given(st.lists(st.text(), max_size=5), st.lists(SECRET, min_size=1, max_size=4))
def test_scrub_leaves_no_secret(fillers: list[str], secrets: list[str]) -> None:
    # The secrets woven into arbitrary text (which may hold pieces of them too).
    text = "".join(f"{f}{secrets[i % len(secrets)]}" for i, f in enumerate(fillers + fillers))
    scrubbed = scrub(text, secrets)
    for secret in secrets:
        assert secret not in scrubbed


@given(st.text(), st.lists(SECRET, max_size=4))
def test_scrub_changes_nothing_without_a_secret(text: str, secrets: list[str]) -> None:
    if not any(s in text for s in secrets):
        assert scrub(text, secrets) == text


def test_scrub_masks_the_longest_secret_whole_first() -> None:
    password = "pw-4711"
    dsn = f"postgresql://exporter:{password}@db:5432/freesport"
    text = f"cannot connect to {dsn}; password {password}"
    assert scrub(text, [password, dsn]) == f"cannot connect to {MASK}; password {MASK}"
    assert scrub(text, ["", password]) == text.replace(password, MASK)  # empty: nothing to mask
