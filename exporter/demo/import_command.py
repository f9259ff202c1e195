"""``manage.py import_customers_from_1c`` stand-in:
``python -m exporter.demo.import_command manage.py import_customers_from_1c ...``.

It lives while an import session runs and holds memory like a big import does
(``DEMO_IMPORT_MB``), so the process-group metrics move; the demo stops it when the session ends.
"""

from __future__ import annotations

import os
import time

from exporter.demo.processes import die_with_parent

PAGE = 4096


def main() -> None:
    die_with_parent()
    ballast = bytearray(int(os.environ["DEMO_IMPORT_MB"]) * 1024 * 1024)
    for i in range(0, len(ballast), PAGE):  # touch every page: resident, not just reserved
        ballast[i] = 1
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
