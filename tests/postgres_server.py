"""A private PostgreSQL server for the tests: its own cluster in a temporary folder, on a free local port.

Nothing about the machine's own PostgreSQL service is assumed or touched: the binaries come from Debian's
`postgresql` package (.ci/run installs it), the cluster is created with `initdb`, started with `pg_ctl` and
removed at the end. PostgreSQL refuses to run as root, so under root (CI) the server runs as the `postgres` user
the package creates. Tests that need it skip, with the reason, when any of this is missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "s3cret-pw"  # the tests check it never reaches an output
USER = "autoaccel"
DATABASE = "studies"


class Unavailable(Exception):
    """Why no server could be started here (the tests skip with this reason)."""


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([p] if (p := shutil.which(name)) else [])
    if not found:
        raise Unavailable(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield the URL of an empty database (with a password) on it."""
    initdb, pg_ctl, psql = _bin("initdb"), _bin("pg_ctl"), _bin("psql")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
        if not shutil.which("runuser"):
            raise Unavailable("running as root and runuser is missing")
        owner = "postgres"
    root = Path(tempfile.mkdtemp(prefix="autoaccel-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        uid = pwd.getpwnam(owner).pw_uid
        for p in (root, sock, pwfile):
            os.chown(p, uid, -1)
    port = _free_port()

    def run(argv: list[str]) -> None:
        done = subprocess.run(_as_owner(argv, owner), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise Unavailable(f"{Path(argv[0]).name} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")

    try:
        run([initdb, "-D", str(data), "-U", USER, "--pwfile", str(pwfile), "-A", "scram-sha-256", "-E", "UTF8"])
        run([pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
             "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off", "start"])
        try:
            env = {**os.environ, "PGPASSWORD": PASSWORD}
            subprocess.run([psql, "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", "postgres", "-c",
                            f"CREATE DATABASE {DATABASE}"], check=True, capture_output=True, env=env, timeout=60)
            yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
        finally:
            subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], owner),
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
