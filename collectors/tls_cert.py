"""The one field of a TLS certificate the exporter reports: its notAfter, read from DER.

The 1C probe reports the expiry of whatever certificate the server sent, even when
verification is off (``insecure_skip_verify``, a self-signed 1C publication), where Python's
``getpeercert()`` returns nothing parsed: only the DER bytes. Walking the DER to the validity
field takes a few lines; a full X.509 library would be a runtime dependency for one date.
"""

from __future__ import annotations

from datetime import UTC, datetime

_UTC_TIME = 0x17  # YYMMDDHHMMSSZ, years 1950-2049 (RFC 5280 4.1.2.5); else GeneralizedTime
_VERSION = 0xA0  # [0] EXPLICIT, present in v2 and v3 certificates


def der_not_after(der: bytes) -> float:
    """notAfter of a DER X.509 certificate as a Unix timestamp (works without verification)."""

    def tlv(pos: int) -> tuple[int, int, int]:
        """Tag, start and end of the value of the element at ``pos``."""
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(der[pos : pos + n], "big")
            pos += n
        return tag, pos, pos + length

    _, cert, _ = tlv(0)
    _, pos, _ = tlv(cert)  # tbsCertificate
    tag, _, end = tlv(pos)
    if tag == _VERSION:
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        pos = tlv(pos)[2]
    _, validity, _ = tlv(pos)
    tag, start, end = tlv(tlv(validity)[2])  # notBefore, then notAfter
    text = der[start:end].decode("ascii")
    if tag == _UTC_TIME:  # RFC 5280's century, not strptime's %y (which reads 50 as 2050)
        text = ("19" if text[:2] >= "50" else "20") + text
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).timestamp()
