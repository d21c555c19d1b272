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


@pytest.mark.django_db(transaction=True)
def test_a_start_that_failed_is_tried_again_at_a_later_request(settings, monkeypatch) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command

    from autotask import wsgi
    from tests.conftest import wait_until

    settings.AUTOTASK_IS_ACTIVE = True
    monkeypatch.setattr(wsgi, "_RETRY_START_AFTER", 0.5)
    call_command("migrate", "autotask", "zero", verbosity=0)
    try:
        wsgi._request_started(WSGIHandler)  # the server's first request: not migrated yet
        wait_until(lambda: wsgi._started_in is None and wsgi._failed_at > 0, timeout=10)
    finally:
        call_command("migrate", "autotask", verbosity=0)
    assert runtime.get().worker is None
    time.sleep(0.6)
    try:
        wsgi._request_started(WSGIHandler)  # a later request, after migrate
        assert wait_until(lambda: runtime.get().worker is not None, timeout=10)
    finally:
        runtime.stop(timeout=1)
        monkeypatch.setattr(wsgi, "_started_in", None)
        monkeypatch.setattr(wsgi, "_failed_at", -1e9)
