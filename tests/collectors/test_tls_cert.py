"""notAfter read from DER, against what the cryptography library reads from the same bytes."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.tls_cert import der_not_after

KEY = ec.generate_private_key(ec.SECP256R1())


def certificate(not_after: dt.datetime, common_name: str, serial: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(not_after - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .sign(KEY, hashes.SHA256())
    )


# UTCTime up to 2049 (two-digit years, 1950 onwards), GeneralizedTime from 2050; issuer names
# long enough for DER's long-form lengths; serials of every width up to RFC 5280's 20 octets.
@settings(max_examples=150, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1950, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64),
    st.integers(1, 2**159 - 1),
)
def test_not_after_is_what_cryptography_reads(
    when: dt.datetime, common_name: str, serial: int
) -> None:
    cert = certificate(when.replace(microsecond=0, tzinfo=dt.UTC), common_name, serial)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der_not_after(der) == cert.not_valid_after_utc.timestamp()


def test_two_digit_years_take_rfc_5280s_century() -> None:
    """UTCTime 50-99 is 1950-1999 (strptime's %y would read 50-68 as 2050-2068)."""
    for year in (1950, 1968, 1969, 1999, 2000, 2049):
        when = dt.datetime(year, 6, 1, 12, 0, tzinfo=dt.UTC)
        der = certificate(when, "onec.local", 1).public_bytes(serialization.Encoding.DER)
        assert der_not_after(der) == when.timestamp(), year
