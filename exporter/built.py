"""Families made again only when what they are made from changed.

A quiet scrape should hand the exposition the very families of the scrape before
(:mod:`exporter.exposition` then reuses their encoding on a pointer comparison a sample), and
not rebuild hundreds of labelled samples from unchanged inputs. The inputs are compared by
equality, so they must be what the families are made of and nothing looser: values of the types
the families print (a count that is an ``int`` today is one tomorrow, as SQL gives it).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import Metric

_NOTHING = object()


class Built:
    """The families made last, and the inputs they were made from."""

    def __init__(self) -> None:
        self._inputs: object = _NOTHING
        self._families: list[Metric] = []

    def get(self, inputs: object, build: Callable[[], list[Metric]]) -> list[Metric]:
        """``build()``'s families, made again only if ``inputs`` differ from the last ones."""
        if self._inputs is _NOTHING or self._inputs != inputs:
            self._families, self._inputs = build(), inputs
        return self._families
