"""The runtime's lifecycle: its pool comes back when closed, and a forked child starts afresh."""

import asyncio
import json
import os

import pytest

from autotask import DONE, RuntimeStopped, runtime
from autotask.models import TaskRun
from autotask.runtime.database import Pool
from tests.app.tasks import add

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_a_closed_pool_is_opened_again_at_its_next_use_and_refuses_once_stopped() -> None:
    async def scenario() -> None:
        pool = Pool()
        await pool.start()
        assert await pool.fetchone("SELECT 1", []) == (1,)
        await pool._pool.close()  # what a stray close() by anyone does
        assert await pool.fetchone("SELECT 2", []) == (2,)
        await pool.stop(deadline=0.0)
        with pytest.raises(RuntimeStopped):
            await pool.fetchone("SELECT 3", [])

    asyncio.run(scenario())


def test_after_stop_the_next_use_brings_up_a_new_loop_and_pool(worker: None) -> None:
    assert add(1, 1).wait(10).result == 2
    runtime.stop(timeout=1)
    handle = asyncio.run(add.defer(2, 2))  # a new loop and pool, without a worker
    assert handle.status == "waiting"
    runtime.start()
    assert asyncio.run(handle.wait(10)).result == 4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() of a threaded process
def test_a_forked_child_runs_a_runtime_of_its_own(settings, start_worker) -> None:
    settings.AUTOTASK_QUEUES = ["default"]  # the parent leaves the child's queue alone
    start_worker()
    parent = runtime.get()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            child = runtime.get()
            fresh = child is not parent and child.worker is None
            settings.AUTOTASK_QUEUES = ["forked"]
            child.start()
            assert child.worker is not None
            worker_id = str(child.worker.id)
            done = asyncio.run(_defer_and_wait())
            child.stop(timeout=2)
            report = {"fresh": fresh, "worker": worker_id, "run": done.id, "result": done.result}
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["fresh"] and report["result"] == 7
    run = TaskRun.objects.get(pk=report["run"])
    assert (run.status, str(run.worker_id)) == (DONE, report["worker"])
    assert str(parent.worker.id) != report["worker"]
    assert add(1, 2).wait(10).result == 3  # the parent's runtime is untouched


async def _defer_and_wait() -> object:
    handle = await add.using(queue="forked").defer(3, 4)
    return await handle.wait(10)
