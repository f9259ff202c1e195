"""The secret walk: every secret of a config reaches the log masker, and none ever prints."""

from __future__ import annotations

from pathlib import Path

from exporter.config import iter_secrets, parse_config


def test_secrets_are_held_as_secret_types_that_never_print(tmp_path: Path) -> None:
    pw_file = tmp_path / "onec_token"
    pw_file.write_text("tok-from-file-123\n")
    text = (
        "database:\n  dsn: postgresql://exporter:${PGPW}@db:5432/freesport\n"
        f"collectors:\n  onec:\n    url: https://1c.example/ping\n    token_file: {pw_file}\n"
        "    password: ${ONEC_PW}\n"
        "  redis:\n    url: redis://:${REDIS_PW}@localhost:6379/0\n"
    )
    env = {"PGPW": "pg-pw-4711", "ONEC_PW": "onec-pw-4712", "REDIS_PW": "redis-pw-4713"}
    config = parse_config(text, "c.yaml", env)
    assert config.database is not None
    assert config.database.dsn.get_secret_value() == (
        "postgresql://exporter:pg-pw-4711@db:5432/freesport"
    )
    assert config.collectors.onec.secret_token() == "tok-from-file-123"  # read and stripped
    assert config.collectors.onec.secret_password() == "onec-pw-4712"
    printed = repr(config) + str(config) + config.model_dump_json()
    for secret in [*env.values(), "tok-from-file-123"]:
        assert secret not in printed
    # The log masker gets every one of them, including the password inside each URL.
    assert set(iter_secrets(config)) >= {*env.values(), "tok-from-file-123"}


def test_url_credentials_are_masked_as_written_and_decoded() -> None:
    # pydantic keeps URL user info percent-encoded; the probe sends it decoded (UTF-8).
    config = parse_config(
        "collectors:\n  synclog: {enabled: false}\n  business: {enabled: false}\n"
        "  postgres: {enabled: false}\n  onec:\n"
        "    url: 'http://%D0%90%D0%B4%D0%BC%D0%B8%D0%BD:%D0%BF%D0%B0%D1%80%D0%BE%D0%BB%D1%8C1%D0%A1@1c/p'\n",
        "c.yaml", {},
    )
    assert {"пароль1С", "%D0%BF%D0%B0%D1%80%D0%BE%D0%BB%D1%8C1%D0%A1"} <= set(iter_secrets(config))

