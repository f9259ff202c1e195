"""customer-sync-exporter: Prometheus exporter for the FREESPORT customer sync with 1C."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("customer-sync-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
