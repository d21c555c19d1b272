"""The benchmarks' limited no-ops, imported only for the measurements that use them: once a
process has a limited task its claims pay for limits (registry.has_limits()), so the
unlimited figures are taken before this module is imported."""

from autotask import task


# Limits that never bind (the runtime has 4 slots): the figures show what the limited claim
# itself costs.
@task(concurrency=4)
def noop_limited() -> None:
    pass


@task(concurrency=4)
async def async_noop_limited() -> None:
    pass


@task(concurrency=1, concurrency_key=lambda key: key)
async def async_noop_keyed(key: str) -> None:
    pass


@task(rate="10000/s")
async def async_noop_rated() -> None:
    pass
