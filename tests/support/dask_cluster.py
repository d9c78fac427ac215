"""A real multi-process Dask cluster on loopback: a ``dask scheduler`` and ``dask worker`` processes (the venv's
executables), each its own OS process, started on free ports and stopped (or SIGKILLed) by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.servers import free_port

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


class DaskClusterProcesses:
    """``dask scheduler`` + ``n_workers`` × ``dask worker --no-nanny --nthreads 1`` (no nanny: a SIGKILLed worker
    stays dead, as a lost machine would)."""

    def __init__(self, *, workdir: Path, n_workers: int = 2) -> None:
        self.workdir = workdir
        self.n_workers = n_workers
        self.port = free_port()
        self.address = f"tcp://{HOST}:{self.port}"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        bin_dir = Path(sys.executable).parent
        self._dask = str(bin_dir / "dask")
        self._env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                                  "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.workdir / log).open("wb") as out:  # the child keeps its own descriptor
            return subprocess.Popen([self._dask, *args], stdout=out, stderr=subprocess.STDOUT, env=self._env,
                                    cwd=self.workdir, start_new_session=True)

    def start(self, *, timeout_s: float = 60.0) -> None:
        self.scheduler = self._spawn(["scheduler", "--host", HOST, "--port", str(self.port), "--dashboard-address",
                                      f"{HOST}:{free_port()}", "--no-show"], "scheduler.log")
        for i in range(self.n_workers):
            self.workers.append(self._spawn(["worker", self.address, "--nthreads", "1", "--no-nanny", "--host",
                                             HOST, "--name", f"w{i}", "--memory-limit", "0"], f"worker{i}.log"))
        self.wait_for_workers(self.n_workers, timeout_s=timeout_s)

    def wait_for_workers(self, n: int, *, timeout_s: float) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout_s
        with Client(self.address, timeout=f"{timeout_s}s") as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{n} Dask workers did not join {self.address} in {timeout_s} s; logs in "
                                       f"{self.workdir}")
                time.sleep(0.2)

    def kill_worker_pid(self, pid: int) -> None:
        """SIGKILL the worker process ``pid`` (one of ours)."""
        for proc in self.workers:
            if proc.pid == pid:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                return
        raise ValueError(f"pid {pid} is not a worker of this cluster ({[p.pid for p in self.workers]})")

    def stop(self) -> None:
        for proc in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
