"""Shared test set-up: markers, an isolated cache per test, deterministic numerics.

Markers (see pyproject.toml): `slow` runs only with POSEBENCH_RUN_SLOW=1 (`make test-slow`); `gpu` needs
CUDA; `needs_weights("name", ...)` needs those registry files in the user's real cache (the test then reads it
through the `real_weights_home` fixture, offline); `needs_data` needs POSEBENCH_DATA_ROOT.
"""

from __future__ import annotations

import os

import pytest

# The user's real cache, captured before any test isolates POSEBENCH_HOME: `needs_weights` tests read it.
REAL_HOME = os.environ.get("POSEBENCH_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "posebench")


def _weights_present(names: tuple[str, ...]) -> bool:
    from posebench import weights

    return all(os.path.isfile(os.path.join(REAL_HOME, "weights", weights.get(n).filename)) for n in names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = os.environ.get("POSEBENCH_RUN_SLOW") == "1"
    has_data = bool(os.environ.get("POSEBENCH_DATA_ROOT"))
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    reasons = {
        "slow": (run_slow, "slow test: set POSEBENCH_RUN_SLOW=1 (make test-slow)"),
        "gpu": (has_gpu, "needs a CUDA device"),
        "needs_data": (has_data, "needs a real dataset root in POSEBENCH_DATA_ROOT"),
    }
    for item in items:
        for marker, (enabled, reason) in reasons.items():
            if marker in item.keywords and not enabled:
                item.add_marker(pytest.mark.skip(reason=reason))
        needs = item.get_closest_marker("needs_weights")
        if needs is not None and not _weights_present(tuple(needs.args)):
            item.add_marker(pytest.mark.skip(reason=f"needs the weight files {', '.join(needs.args)} in {REAL_HOME} "
                                             f"(posebench weights download {' '.join(needs.args)})"))


@pytest.fixture
def real_weights_home(monkeypatch: pytest.MonkeyPatch) -> str:
    """For `needs_weights` tests: POSEBENCH_HOME back at the user's real cache, offline."""
    monkeypatch.setenv("POSEBENCH_HOME", REAL_HOME)
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    return REAL_HOME


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own empty POSEBENCH_HOME and is online unless it says otherwise."""
    home = tmp_path_factory.mktemp("posebench-home")
    monkeypatch.setenv("POSEBENCH_HOME", str(home))
    monkeypatch.delenv("POSEBENCH_OFFLINE", raising=False)
    return home


@pytest.fixture(autouse=True, scope="session")
def _deterministic_numerics():
    try:
        import torch
    except ImportError:
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.fixture
def file_server():
    """A live HTTP server on 127.0.0.1 serving `state.files`; see tests/httpserver.py."""
    from httpserver import FileServer, start

    state = FileServer()
    httpd, thread = start(state)
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def free_port() -> int:
    """A TCP port nobody listens on now: torchrun tests must not collide with another run on 29500."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
