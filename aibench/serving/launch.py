"""Start a serving engine as a subprocess, wait until it is healthy, stop it.

Engines: "aibench" (`python -m aibench serve`), "vllm" (`python -m vllm.entrypoints.openai.api_server`,
what `vllm serve` runs) and "sglang" (`python -m sglang.launch_server`). Each listens on 127.0.0.1
at a free port; health is GET /health returning 200 (all three serve it). The engine's output goes
to a log file whose tail is quoted when it dies or never gets healthy. An engine that is not
installed raises `Unsupported` (the case is skipped with the reason); one that exits or stays
unhealthy raises `WorkloadError` (the case fails with the log's tail).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aibench.core.errors import Unsupported, UsageError, WorkloadError

ENGINES = ("aibench", "vllm", "sglang")
_MODULES = {"aibench": "aibench", "vllm": "vllm", "sglang": "sglang"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def installed(engine: str) -> tuple[bool, str | None]:
    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if importlib.util.find_spec(_MODULES[engine]) is None:
        return False, f"{engine} is not installed (pip install {engine})"
    return True, None


def version(engine: str) -> str | None:
    try:
        return importlib.metadata.version(_MODULES[engine])
    except importlib.metadata.PackageNotFoundError:
        return None


def command(engine: str, model: str, port: int, args: Sequence[str] = (), host: str = "127.0.0.1") -> list[str]:
    py = sys.executable
    if engine == "aibench":
        return [py, "-m", "aibench", "serve", "--model", model, "--host", host, "--port", str(port), *args]
    if engine == "vllm":
        return [py, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host,
                "--port", str(port), *args]
    if engine == "sglang":
        return [py, "-m", "sglang.launch_server", "--model-path", model, "--host", host, "--port", str(port), *args]
    raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


@dataclass
class Server:
    engine: str
    url: str
    argv: list[str]
    process: subprocess.Popen
    log_path: Path
    version: str | None
    started_s: float = field(default_factory=time.perf_counter)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # a clean shutdown first (uvicorn, aiohttp and click all take it)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace_s)

    def record(self) -> dict[str, object]:
        """What the record says about the engine it measured."""
        return {"engine": self.engine, "engine_version": self.version, "engine_argv": self.argv[1:],
                "url": self.url}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(engine: str, model: str, args: Sequence[str] | str = (), *, timeout_s: float = 600.0,
          log_dir: str | Path | None = None, env: dict[str, str] | None = None) -> Server:
    """Start the engine and return once /health answers 200."""
    ok, why = installed(engine)
    if not ok:
        raise Unsupported(why or f"{engine} is not installed")
    argv_extra = shlex.split(args) if isinstance(args, str) else list(args)
    port = free_port()
    argv = command(engine, model, port, argv_extra)
    folder = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"aibench-{engine}-"))
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{engine}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
    server = Server(engine, f"http://127.0.0.1:{port}", argv, proc, log_path, version(engine))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WorkloadError(f"{engine} exited with code {proc.returncode} before it was healthy; "
                                f"log {log_path}:\n{server.log_tail()}")
        if _healthy(server.url):
            return server
        time.sleep(0.2)
    server.stop()
    raise WorkloadError(f"{engine} not healthy after {timeout_s:g} s; log {log_path}:\n{server.log_tail()}")


@contextlib.contextmanager
def running(engine: str, model: str, args: Sequence[str] | str = (), **kwargs: object) -> Iterator[Server]:
    server = start(engine, model, args, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


# One engine at a time, reused by consecutive cases with the same engine, model and arguments (a
# suite's concurrency sweep is one case per point; vLLM takes minutes to start). Asking for another
# stops the old one first (it holds the GPU); whatever runs at exit is stopped then.
_SHARED: dict[tuple[str, str, tuple[str, ...]], Server] = {}


def shared(engine: str, model: str, args: Sequence[str] | str = (), **kwargs: object) -> Server:
    key = (engine, model, tuple(shlex.split(args) if isinstance(args, str) else args))
    server = _SHARED.get(key)
    if server is not None and server.alive() and _healthy(server.url):
        return server
    stop_shared()
    server = start(engine, model, args, **kwargs)  # type: ignore[arg-type]
    _SHARED[key] = server
    return server


def stop_shared() -> None:
    while _SHARED:
        _, server = _SHARED.popitem()
        server.stop()


atexit.register(stop_shared)
