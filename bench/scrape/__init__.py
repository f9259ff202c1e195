"""The parts of ``bench/scrape_bench.py`` (the command), one job each.

``data`` loads and keeps the FREESPORT tables; ``floor`` is the raw SQL floor; ``peer`` runs
query-exporter; ``ours`` runs this exporter; ``measure`` and ``scraping`` are how every side is
measured; ``report`` prints the results and the targets of issue 16.
"""
