"""A private PostgreSQL cluster for the team stack (Debian's ``postgresql`` binaries).

The cluster lives in one folder, listens on 127.0.0.1 only, on its own port, with
password (SCRAM) authentication for every connection. PostgreSQL refuses to run as root,
so when we are root the server runs as a dedicated unprivileged user (``postgres`` from the
Debian package, or ``ENTROAD_STACK_PG_USER``), created with ``useradd`` if missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from entroad.stack.processes import StackError, port_open, wait_until

SUPERUSER = "entroad"
PG_USER_ENV = "ENTROAD_STACK_PG_USER"


def bindir() -> Path:
    """Where initdb/pg_ctl/psql live: ``pg_config --bindir``, else Debian's versioned folder."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "pg_ctl").exists():
            return Path(out)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed; on Debian/Ubuntu: "
        "`apt-get install -y postgresql`, or point tracking.uri / PREFECT_API_URL at existing servers"
    )


def _run_as() -> str | None:
    """The unprivileged account that runs the server (None: we are not root, run as ourselves)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(PG_USER_ENV, "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
    return name


@dataclass
class Postgres:
    data_dir: Path
    port: int
    password: str

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "logs" / "postgres.log"

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """Connection URL *without* the password: servers get it as ``PGPASSWORD`` (libpq and
        asyncpg read it), so it shows neither in process lists nor in config files."""
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def client_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def _run(self, args: list[str], user: str | None, what: str) -> None:
        res = subprocess.run(args, capture_output=True, text=True, user=user, cwd="/", check=False)
        if res.returncode != 0:
            raise StackError(f"PostgreSQL {what} failed (exit {res.returncode}): {res.stderr.strip()[-800:]}")

    def init(self) -> None:
        """A new cluster in ``data_dir`` (skipped when one is already there)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        user = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.parent / ".pgpass-init"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        if user:
            uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
            # the server account must reach its folder (a 0700 temp folder would stop it)
            parent = self.data_dir.parent
            os.chmod(parent, parent.stat().st_mode | 0o111)
            for p in (self.data_dir, pwfile, self.log.parent):
                os.chown(p, uid, gid)
        try:
            self._run([str(bindir() / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--no-locale",
                       "-E", "UTF8", "--auth=scram-sha-256", f"--pwfile={pwfile}"], user, "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as f:
            # TCP on loopback only; no unix socket (its default folder belongs to the system cluster)
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                    "max_connections = 200\nshared_buffers = 32MB\n")

    def start(self, timeout: float = 60.0) -> None:
        user = _run_as()
        if user:
            os.chown(self.log.parent, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        self._run([str(bindir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log), "-w",
                   "-t", str(int(timeout)), "start"], user, f"start on port {self.port}")
        wait_until(lambda: port_open(self.port), timeout, f"PostgreSQL on 127.0.0.1:{self.port}", self.log)

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([str(bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                  _run_as(), "stop")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and port_open(self.port)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql as the cluster's superuser; returns its unaligned output."""
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"}
        res = subprocess.run(
            [str(bindir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", statement],
            capture_output=True, text=True, env=env, check=False,
        )
        if res.returncode != 0:
            raise StackError(f"PostgreSQL on port {self.port}: {res.stderr.strip()[-500:]}")
        return res.stdout.strip()

    def ensure_database(self, name: str, extensions: tuple[str, ...] = ()) -> None:
        if self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            self.sql(f'CREATE DATABASE "{name}"')
        for ext in extensions:
            self.sql(f"CREATE EXTENSION IF NOT EXISTS {ext}", database=name)
