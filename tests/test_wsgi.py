"""AUTOTASK_IS_ACTIVE in this process: the test client's requests are not a server's."""

import time

import pytest

from autotask import runtime


@pytest.mark.usefixtures("transactional_db")
def test_the_test_clients_requests_start_no_runtime_with_the_switch_on(settings, client) -> None:
    settings.AUTOTASK_IS_ACTIVE = True
    assert client.get("/").content == b"hello"
    time.sleep(0.3)  # a start would have begun in the background by now
    assert runtime.get().worker is None
