"""The real worker, with every computation slowed by FIB_TEST_DELAY seconds.

Lets tests kill or stop a worker while it is provably in the middle of a job.
Used only by tests; the production entry point is `python -m fibworker`.
"""

from __future__ import annotations

import os
import sys
import time

from fibworker import __main__ as worker_main
from fibworker import fib

_real = fib.fibonacci


def _slow(n: int):  # type: ignore[no-untyped-def]
    time.sleep(float(os.environ.get("FIB_TEST_DELAY", "0")))
    return _real(n)


fib.fibonacci = _slow

if __name__ == "__main__":
    sys.exit(worker_main.main())
