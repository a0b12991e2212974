"""A real, throwaway PostgreSQL server (Debian's `postgresql` package) for the plant-record tests.

    with PostgresServer() as pg:          # initdb in a temporary directory, started on a free port
        pg.url                            # postgresql://edge@127.0.0.1:PORT/postgres
        pg.crash()                        # SIGKILL to the whole server (postmaster and backends)
        pg.start()                        # crash recovery, same data

PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user the Debian
package creates. Tests skip (with the reason) where the binaries or psycopg are missing.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def skip_without_postgres() -> None:
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'edge-xai[plant]')")
    if not (_binary("initdb") and _binary("postgres")):
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run the server as")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        skip_without_postgres()
        self.root = tempfile.mkdtemp(prefix="edge-xai-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.url = f"postgresql://edge@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen | None = None
        self._as: dict = {}           # Popen's user/group: exec'd directly, so the pid is the postmaster's
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        os.chmod(self.root, 0o700)
        subprocess.run([_binary("initdb"), "-D", self.data, "-U", "edge", "-A", "trust", "--no-sync",
                        "-E", "UTF8"], check=True, capture_output=True,
                       cwd=self.root, **self._as)

    def start(self, timeout_s: float = 30.0) -> None:
        log = open(os.path.join(self.root, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [_binary("postgres"), "-D", self.data, "-p", str(self.port), "-k", self.root,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root, **self._as)
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log()[-2000:]}") from None
                time.sleep(0.1)

    def crash(self) -> None:
        """SIGKILL to the server's process group: a power cut as far as the database knows."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        # backends die with their postmaster's group; give the kernel a moment to release the port
        time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)            # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.crash()

    def log(self) -> str:
        path = os.path.join(self.root, "server.log")
        return open(path, errors="replace").read() if os.path.exists(path) else ""

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
