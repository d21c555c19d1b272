"""The monitor: a live page of queues, workers, schedules and runs, and a Prometheus endpoint.

Mounted with ``path("autotask/", include("autotask.urls"))``; see the README's "Monitor".
"""
