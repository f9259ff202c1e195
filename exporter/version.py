"""``--version``: what the Go exporters' ``--version`` prints, for a Python program.

The version is the installed package's; the revision is the commit pip recorded when the package
was installed from a VCS URL (PEP 610 ``direct_url.json``), else ``unknown``; then the Python
that runs it, the platform, and the libraries that shape its output.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

from exporter import __version__

DISTRIBUTION = "customer-sync-exporter"
LIBRARIES = ("prometheus-client", "h11", "psycopg", "structlog")


def revision() -> str:
    try:
        return commit_of(metadata.distribution(DISTRIBUTION).read_text("direct_url.json"))
    except metadata.PackageNotFoundError:
        return "unknown"


def commit_of(direct_url: str | None) -> str:
    """The VCS commit a PEP 610 ``direct_url.json`` records, or ``unknown``."""
    try:
        commit = json.loads(direct_url or "{}").get("vcs_info", {}).get("commit_id")
    except (ValueError, AttributeError):
        return "unknown"
    return commit if isinstance(commit, str) and commit else "unknown"


def _library(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} missing"


def version_text(prog: str = DISTRIBUTION) -> str:
    rows = [
        ("python version", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("platform", f"{sys.platform}/{platform.machine() or 'unknown'}"),
        ("libraries", ", ".join(_library(n) for n in LIBRARIES)),
    ]
    head = f"{prog}, version {__version__} (revision: {revision()})"
    return "\n".join([head, *(f"  {k + ':':<17} {v}" for k, v in rows)])
