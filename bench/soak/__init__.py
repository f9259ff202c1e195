"""The soak of ``bench/soak.py``, one job per module, read in the order a run goes:

* ``plan``: the command line and what it implies (windows, warm-up, retention);
* ``stack``: the demo's parts (PostgreSQL, Redis and Celery, the 1C stand-in, logs, imports)
  and the traffic with its sped-up clock, stopped in reverse order;
* ``exporter_process``: the exporter's config and the exporter as its own process;
* ``probe``: a scrape, the exporter's RSS, fds and database sessions, and retention;
* ``report``: the ``[soak] ...`` lines printed along the way and at the end;
* ``verdict``: the rules a run is judged by, growth after warm-up and ground truth by SQL;
* ``run``: the loop that ties them together, and ``main``.

Why a package: the soak outgrew the house's 400 lines per module (issue 13). ``bench/soak.py``
stays the documented command (docs/soak.md).
"""
