"""Side-by-side benchmark: autotask, pgqueuer, oban, procrastinate and a plain-psycopg floor.

``python -m tests.benchmarks.compare`` (or ``nox -s compare``) runs the same workloads against
every system, each (system, workload, repetition) in a fresh subprocess that imports only the
system under test, and prints one table of medians. Nothing is asserted: it prints figures so
that anyone can reproduce the ratios on their own machine.

The package is also a tiny Django app (``tasks.py`` holds autotask's tasks, found by
autodiscovery) that only ``autotask_settings`` installs.
"""
