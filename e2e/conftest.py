"""Fixtures of the end-to-end suite: one gateway for the session, one user per module."""

import os

import pytest

from harness import DEFAULT_BIN, new_user, start_server, stop


@pytest.fixture(scope="session")
def tollgate(tmp_path_factory):
    """The mock upstream and the tollgate binary, running."""
    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no tollgate binary at {binary} (build it or set TOLLGATE_BIN)")
    server, procs = start_server(tmp_path_factory.mktemp("tollgate"), binary)
    try:
        yield server
    finally:
        server.http.close()
        stop_all(procs)


def stop_all(procs):
    """Stops each process (the gateway first), even if stopping one fails."""
    if procs:
        try:
            stop(procs[0])
        finally:
            stop_all(procs[1:])


@pytest.fixture(scope="module")
def gw(tollgate, request):
    """A fresh user (START_USD of balance) for the module's tests."""
    gateway = new_user(tollgate, "e2e-" + request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (`item.rep_call`), for fixtures
    that act on a failure (the browser tests' screenshots)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
