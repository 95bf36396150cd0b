"""A real PostgreSQL for tests and benches: a fresh cluster in a temporary
folder (Debian's `initdb` and `pg_ctl`, /usr/lib/postgresql/*/bin), on a
free loopback port, trust authentication for loopback only, stopped and
removed by `stop()`.

    pg = Postgres().start()
    url = pg.new_database()      # postgresql+psycopg://preau@127.0.0.1:PORT/city_1
    ...
    pg.stop()

PostgreSQL refuses to run as root: when the test runs as root, the cluster
belongs to the `postgres` account (the package makes it) and its commands
run as that account (`runuser`). `fsync` is on by default, as a city runs
it; tests pass `fsync=False` (a test's database does not outlive a power cut).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time

from .brokers import free_port

USER = "preau"
START_TIMEOUT_S = 60.0


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, initialised or started."""


def pg_bin() -> str:
    """The newest installed server's bin folder; PostgresError if none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if not found:
        initdb = shutil.which("initdb")
        if initdb is None:
            raise PostgresError("PostgreSQL is not installed: `apt-get install postgresql` (initdb, pg_ctl)")
        return os.path.dirname(initdb)
    return os.path.dirname(found[-1])


def available() -> bool:
    try:
        pg_bin()
    except PostgresError:
        return False
    return True


class Postgres:
    def __init__(self, directory: str | None = None, fsync: bool = True) -> None:
        self.bin = pg_bin()
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="preau-pg-")
        self.data = os.path.join(self.dir, "data")
        self.socket_dir = os.path.join(self.dir, "socket")
        self.host = "127.0.0.1"
        self.port = 0
        self.fsync = fsync
        self._names = itertools.count(1)
        self._account = None
        if os.geteuid() == 0:
            try:
                self._account = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError("running as root and no `postgres` account to run PostgreSQL as") from None

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        cmd = [os.path.join(self.bin, args[0]), *args[1:]]
        if self._account is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise PostgresError(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
        return done.stdout

    def start(self) -> Postgres:
        os.makedirs(self.socket_dir, exist_ok=True)
        if self._account is not None:
            os.chmod(self.dir, 0o755)
            for path in (self.dir, self.socket_dir):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)
        self._run("initdb", "-D", self.data, "-U", USER, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
                  "--no-instructions")
        self.port = free_port()
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
                   f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=100")
        if not self.fsync:
            options += " -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.dir, "server.log"),
                      "-w", "-t", str(int(START_TIMEOUT_S)), "start")
        except PostgresError as e:
            log = ""
            try:
                with open(os.path.join(self.dir, "server.log")) as f:
                    log = f.read()[-2000:]
            except OSError:
                pass
            raise PostgresError(f"{e}\n{log}") from None
        # A session ended without its teardown (Ctrl-C twice) leaves no server behind.
        atexit.register(self.stop)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@{self.host}:{self.port}/{database}"

    def new_database(self, prefix: str = "city") -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        name = f"{prefix}_{next(self._names)}_{os.getpid()}"
        with psycopg.connect(host=self.host, port=self.port, user=USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self.port and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
            except (PostgresError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        if self._own_dir:
            for _ in range(3):
                shutil.rmtree(self.dir, ignore_errors=True)
                if not os.path.exists(self.dir):
                    break
                time.sleep(0.1)
