"""A real ``redis-server`` for the tests of the online store and the prediction service: one per test session (per
pytest-xdist worker), on a free port of 127.0.0.1, with persistence off; each test gets it emptied."""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from deployed_platform import free_port


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """Debian's ``redis-server`` (``.ci/run`` installs it) on a free port of 127.0.0.1, persistence off, answering;
    stopped and its folder removed on exit. Also what ``bench/serving.py`` runs its Redis backend on."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: apt-get install -y redis-server (.ci/run does)"
    folder = Path(tempfile.mkdtemp(prefix="platform-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    import redis

    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, f"redis-server exited with {process.returncode}"
                assert time.monotonic() < deadline, "redis-server did not answer within 20 s"
                time.sleep(0.05)
        yield RedisServer(port=port, process=process)
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server per test session: a missing binary fails the test, it is not skipped."""
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's server, emptied for this test."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server.url
