"""A real S3 API server for the tests of the lake on object storage: moto's standalone server (``moto[server]``,
a dev dependency), one per test session, on a free port of 127.0.0.1, with a bucket of its own.

moto keeps the objects in memory and honours what the lake's writers rely on (multipart uploads, ranged reads,
listings, conditional puts), but it does not check keys: the tests prove the keys are passed, not refused.
"""

import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deployed_platform import free_port

from spark_jobs.object_store import ObjectStore

BUCKET = "platform-lake"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class S3Server:
    port: int
    bucket: str
    access_key_id: str = field(default="platform-test", repr=False)
    secret_access_key: str = field(default="platform-test-secret", repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def object_store(self) -> ObjectStore:
        return ObjectStore(endpoint_url=self.endpoint_url, access_key_id=self.access_key_id,
                           secret_access_key=self.secret_access_key)  # fmt: skip

    def aws_env(self) -> dict[str, str]:
        """The keys as AWS's clients find them in the environment (a job's command line takes no secret)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}

    def keys(self, prefix: str = "") -> list[str]:
        """Every object's key under ``prefix``, listed over the S3 API itself (pyarrow's client)."""
        import pyarrow.fs as pafs

        filesystem = self.object_store().filesystem()
        selector = pafs.FileSelector(f"{self.bucket}/{prefix}".rstrip("/"), recursive=True, allow_not_found=True)
        return sorted(
            info.path.removeprefix(f"{self.bucket}/")
            for info in filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
        )


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """``moto_server`` on a free port of 127.0.0.1 with an empty bucket; stopped on exit."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="platform-s3-")) / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    server = S3Server(port, BUCKET)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, f"moto_server exited with {process.returncode}: {log.read_text()}"
                assert time.monotonic() < deadline, f"moto_server did not answer within {START_TIMEOUT_S} s"
                time.sleep(0.2)
        create_bucket = urllib.request.Request(f"{server.endpoint_url}/{BUCKET}", method="PUT")  # CreateBucket
        urllib.request.urlopen(create_bucket, timeout=10).close()
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server
