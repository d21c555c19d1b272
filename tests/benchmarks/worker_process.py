"""One worker process of the duplicates measurement: a runtime against ``autotask_bench``.

Protocol with the parent, over pipes: prints ``ready <pid>`` once its runtime is started, then
runs until a line (or end of file) arrives on stdin, stops the runtime gracefully and prints
``stopped <pid>``. Run as ``python -m tests.benchmarks.worker_process`` from the repository root.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.benchmarks.settings"
    import django

    django.setup()
    from autotask import runtime

    runtime.start()
    print(f"ready {os.getpid()}", flush=True)
    try:
        sys.stdin.readline()
    finally:
        runtime.stop()
    print(f"stopped {os.getpid()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
