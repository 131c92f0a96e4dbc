"""What the browser tests need: Debian's Chromium driven by Playwright, and ``dagster dev`` on a free local port
over the instance a pipeline ran in. The fixtures are registered in this folder's conftest.py.

Playwright drives the system browser (``executable_path``); it never downloads one (no ``playwright install``).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dagster_project.settings import REPO_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

ARTIFACTS = REPO_ROOT / "artifacts" / "ui"  # gitignored; kept after the run for a person to look at
CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches out: without the background-networking flags the sandboxed machine refuses
# Chromium's own connections and pages stall.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_chromium() -> str:
    """Debian's chromium, installed on first use where we may (root with apt-get); else skip with the reason."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Debian's chromium is not installed (sudo apt-get install -y chromium) and cannot be installed")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "chromium"]
    if subprocess.run(install, capture_output=True, env=env, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=900)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"apt-get install chromium failed: {done.stderr[-500:]}")
    return CHROMIUM


@contextlib.contextmanager
def browser_context() -> Iterator["BrowserContext"]:
    """A headless Chromium with a fresh profile of its own, as a Playwright browser context."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    profile = tempfile.mkdtemp(prefix="platform-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1600, "height": 1000},
                timeout=60_000,
            )
            context.set_default_timeout(30_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def graphql(base_url: str, query: str, timeout: float = 10) -> dict:
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


class DagsterDev:
    """``dagster dev`` on the repository's workspace.yaml, in a process group of its own (it starts a webserver,
    a daemon and a code server), stopped as a whole."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        """``env``: the environment the platform ran with (its DAGSTER_HOME is the instance the UI shows)."""
        assert env.get("DAGSTER_HOME"), "dagster dev needs the instance the pipeline ran in"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        dagster = str(Path(sys.executable).parent / "dagster")
        command = [dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "--host", "127.0.0.1",
                   "--port", str(self.port)]  # fmt: skip
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_until_loaded(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until the GraphQL endpoint answers and the code location has loaded (or failed: then raise at once)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                answer = graphql(self.base_url, LOCATION_QUERY)
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                time.sleep(1)
                continue
            entries = answer.get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                assert not errors, f"the code location failed to load: {errors}"
                return
            time.sleep(1)
        raise AssertionError(f"dagster dev did not load within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the whole group (dagster dev shuts its children down), SIGKILL to whatever is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the kernel has reaped the whole group
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        raise AssertionError(f"processes of dagster dev (group {self.process.pid}) outlived SIGKILL")


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], log_path: Path) -> Iterator[DagsterDev]:
    server = DagsterDev(env, log_path)
    try:
        server.wait_until_loaded()
        yield server
    finally:
        server.stop()
