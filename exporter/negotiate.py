"""Content negotiation for ``/metrics``: which exposition format (``Accept``), gzip or not
(``Accept-Encoding``), with q-values honoured and any header, however broken, answered.

Like client_golang (``expfmt.Negotiate``) and client_python, we never answer 406: a client whose
``Accept`` names nothing we serve, or that refuses everything, gets the text format, which every
Prometheus reads. Unlike both, ``q=0`` means "not acceptable" (RFC 9110 §12.4.2): goautoneg sorts
a ``q=0`` range last but still picks it, and client_python ignores q altogether.

Formats: the preferred range we can serve wins (see :func:`choose_format`).
``application/openmetrics-text`` and ``text/plain`` ranges with ``version``/``escaping``
parameters are handed to prometheus_client's ``choose_encoder`` one range at a time, so formats
and versions are exactly the ones the installed client_python writes; a range it cannot serve or
cannot even parse (``version=abc`` raised ``TypeError`` in it: a 500) is passed over.

Encodings: gzip when its q (``gzip``/``x-gzip``, else ``*``, else 0) is above zero and, if the
client rates ``identity`` too, at least identity's (RFC 9110 §12.5.3). client_golang (gddo's
``NegotiateContentEncoding``) also skips ``q=0``; client_python gzips whenever ``gzip`` is listed.

The list syntax is parsed here rather than by a library: the rules are a dozen lines (a list of
elements with ``;``-parameters and quoted strings), and the libraries that parse them (werkzeug,
python-mimeparse) would each be a dependency for this one use. Malformed elements (no ``/`` in a
media range, a q that is not a qvalue) are dropped, the rest still count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.exposition import choose_encoder

Encoder = Callable[[Any], bytes]

OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain"
OFFERS = (TEXT, OPENMETRICS)  # for a wildcard: text first, as client_python defaults to it

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


@dataclass(frozen=True)
class Preference:
    """One element of an ``Accept``-style list: a lowercased value, its parameters, its q."""

    value: str
    params: tuple[tuple[str, str], ...]
    q: float
    position: int

    @property
    def specificity(self) -> int:
        """0 for ``*``/``*/*``, 1 for ``type/*``, 2 for a full value, 3 with parameters."""
        if self.value in ("*", "*/*"):
            return 0
        if self.value.endswith("/*"):
            return 1
        return 3 if self.params else 2

    def matches(self, offer: str) -> bool:
        if self.value in ("*", "*/*"):
            return True
        if self.value.endswith("/*"):
            return offer.startswith(self.value[:-1])
        return self.value == offer


def _split(text: str, sep: str) -> Iterator[str]:
    """``text`` split at ``sep`` outside double-quoted strings."""
    start, quoted, escaped = 0, False, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            yield text[start:i]
            start = i + 1
    yield text[start:]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_preferences(header: str | None, *, media: bool) -> list[Preference]:
    """Every well-formed element of ``header``, q=0 ones included, in the client's order.

    ``media`` asks for ``type/subtype`` values (``Accept``); otherwise tokens
    (``Accept-Encoding``)."""
    out: list[Preference] = []
    for position, element in enumerate(_split(header or "", ",")):
        parts = [p.strip() for p in _split(element, ";")]
        value = parts[0].lower()
        if media:
            kind, slash, sub = value.partition("/")
            if not (slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(sub)):
                continue
            if kind == "*" and sub != "*":
                continue
        elif not _TOKEN.fullmatch(value):
            continue
        q, params, ok = 1.0, [], True
        for param in parts[1:]:
            name, eq, raw = param.partition("=")
            name = name.strip().lower()
            raw = raw.strip()
            if not (eq and _TOKEN.fullmatch(name) and raw):
                ok = False
                break
            if name == "q":
                if not _QVALUE.fullmatch(raw):
                    ok = False
                    break
                q = float(raw)
            else:
                params.append((name, _unquote(raw)))
        if ok:
            out.append(Preference(value, tuple(params), q, position))
    return out


def _best_match(prefs: list[Preference], offer: str) -> Preference | None:
    """The most specific parameterless range matching ``offer`` (the first, among equals)."""
    best: Preference | None = None
    for p in prefs:
        if p.params or not p.matches(offer):
            continue
        if best is None or p.specificity > best.specificity:
            best = p
    return best


def _serialize(p: Preference) -> str:
    return "; ".join([p.value, *(f"{k}={v}" for k, v in p.params)])


def _encoder_for(p: Preference) -> tuple[Encoder, str] | None:
    """What client_python writes for this one range, if it is a format it can serve."""
    try:
        encoder, content_type = choose_encoder(_serialize(p))
    except (TypeError, ValueError):  # e.g. version=abc: a version it cannot compare
        return None
    if content_type.split(";", 1)[0].strip() != p.value:
        return None  # it fell back to its default: this range is not one it serves
    return encoder, content_type


def choose_format(accept: str | None) -> tuple[Encoder, str]:
    """The encoder and Content-Type for ``accept``; the text format if nothing better fits.

    Candidates are each range with parameters that names a format (``text/plain;version=1.0.0``)
    and each format's plain form, at the q of the most specific parameterless range matching it
    (RFC 9110 §12.5.1: ``text/plain;q=0, */*`` refuses text even though ``*/*`` would take it).
    The highest q wins, then the more specific range, then the client's order."""
    prefs = parse_preferences(accept, media=True)
    candidates: list[tuple[float, int, int, int, tuple[Encoder, str]]] = []
    for p in prefs:
        if p.params and p.value in OFFERS and p.q > 0:
            chosen = _encoder_for(p)
            if chosen is not None:
                candidates.append((p.q, p.specificity, -p.position, 0, chosen))
    for rank, offer in enumerate(OFFERS):
        best = _best_match(prefs, offer)
        if best is not None and best.q > 0:
            candidates.append((best.q, best.specificity, -best.position, -rank, _plain(offer)))
    if not candidates:
        return _plain(TEXT)
    return max(candidates, key=lambda c: c[:4])[4]


def _plain(offer: str) -> tuple[Encoder, str]:
    """client_python's format for the bare media type (text: 0.0.4; OpenMetrics: 1.0.0)."""
    encoder, content_type = choose_encoder(offer)
    return encoder, content_type


def gzip_accepted(accept_encoding: str | None) -> bool:
    """Whether to gzip the answer for this ``Accept-Encoding``."""
    prefs = parse_preferences(accept_encoding, media=False)
    explicit = [p.q for p in prefs if p.value in ("gzip", "x-gzip")]
    star = [p.q for p in prefs if p.value == "*"]
    gzip_q = max(explicit) if explicit else max(star) if star else 0.0
    identity = [p.q for p in prefs if p.value == "identity"]
    return gzip_q > 0 and (not identity or gzip_q >= max(identity))
