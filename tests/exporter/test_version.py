"""``--version``'s revision, from what pip records (PEP 610) about where the package came from."""

from __future__ import annotations

import pytest

from exporter.version import commit_of, version_text

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("direct_url", "expected"), [
    ('{"url": "git+https://example.org/x.git", "vcs_info": {"vcs": "git", '
     f'"commit_id": "{COMMIT}"}}}}', COMMIT),
    ('{"url": "file:///src", "dir_info": {"editable": true}}', "unknown"),  # a source tree
    (None, "unknown"),  # a wheel from an index records nothing
    ("not json", "unknown"),
    ('["a list"]', "unknown"),
    ('{"vcs_info": {"commit_id": ""}}', "unknown"),
])
def test_the_revision_is_the_recorded_commit_or_unknown(direct_url: str | None,
                                                        expected: str) -> None:
    assert commit_of(direct_url) == expected


def test_the_first_line_is_shaped_like_the_go_exporters() -> None:
    first = version_text("some-exporter").splitlines()[0]
    assert first.startswith("some-exporter, version ") and "(revision: " in first
