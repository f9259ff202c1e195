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
        # One tuple, replaced whole: a reader in another thread never sees families of other
        # inputs than the ones beside them.
        self._last: tuple[object, list[Metric]] = (_NOTHING, [])

    def get(self, inputs: object, build: Callable[[], list[Metric]]) -> list[Metric]:
        """``build()``'s families, made again only if ``inputs`` differ from the last ones."""
        last_inputs, families = self._last
        if last_inputs is _NOTHING or last_inputs != inputs:
            families = build()
            self._last = (inputs, families)
        return families
