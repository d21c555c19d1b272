"""Benchmarks of autotask: ``python -m tests.benchmarks [--quick]`` from the repository root.

They run against the database ``autotask_bench`` on the server that ``DATABASE_URL`` points at
(created when missing), never against the database the URL names. See ``__main__.py``.
"""
