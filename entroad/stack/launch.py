"""``make stack``: the whole team stack on this machine, state under one folder.

``up`` starts PostgreSQL, the S3 API (moto), the MLflow server with basic-auth, the Prefect
server, a process work pool and one worker, on free ports, and records them in
``<state>/stack.json``; ``down`` stops them (also after a crash of ``up``: every server is
recorded as soon as it runs). Passwords are generated at first start into
``<state>/secrets/`` (mode 0600) and never printed: the printed ``export`` lines read them
from there.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from entroad.stack import access, mlflow_server, prefect_server, s3
from entroad.stack.postgres import Postgres
from entroad.stack.processes import StackError, free_port, stop_group

STATE_FILE = "stack.json"
BUCKET = "entroad"
POOL = "entroad"
SECRET_NAMES = ("postgres", "admin", *access.IDENTITIES, "s3", "mlflow-csrf")
# tools run by the stack must not inherit the caller's store or identity
_SCRUB = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
          "MLFLOW_S3_ENDPOINT_URL", "PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_DATABASE_CONNECTION_URL")


@dataclass
class StackState:
    folder: str
    root: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    pool: str = POOL
    bucket: str = BUCKET
    experiment: str = "entroad"
    registered_model: str = "entroad"

    # -- where things are ---------------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}/api"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def dvc_remote_url(self) -> str:
        return f"s3://{self.bucket}/dvc"

    def secret(self, name: str) -> str:
        return (self.path / "secrets" / name).read_text().strip()

    def secret_file(self, name: str) -> Path:
        return self.path / "secrets" / name

    def postgres(self) -> Postgres:
        return Postgres(self.path / "postgres", self.ports["postgres"], self.secret("postgres"))

    def s3(self) -> s3.S3Endpoint:
        return s3.S3Endpoint(self.s3_url, "entroad-stack", self.secret("s3"))

    # -- client environments --------------------------------------------------------------
    def client_env(self, user: str) -> dict[str, str]:
        """What a client process needs to act as ``user`` (MLflow, Prefect, DVC's S3 remote)."""
        return {"MLFLOW_TRACKING_URI": self.mlflow_url, "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": self.secret(user), "PREFECT_API_URL": self.prefect_api,
                "AWS_ENDPOINT_URL_S3": self.s3_url, **self.s3().env()}

    def export_lines(self, user: str = access.TRAINER) -> list[str]:
        """Lines a user pastes into a shell; secrets are read from their files, never shown."""
        s = self.s3()
        return [
            f"export MLFLOW_TRACKING_URI={self.mlflow_url}",
            f"export MLFLOW_TRACKING_USERNAME={user}",
            f'export MLFLOW_TRACKING_PASSWORD="$(cat {self.secret_file(user)})"',
            f"export PREFECT_API_URL={self.prefect_api}",
            f"export AWS_ACCESS_KEY_ID={s.access_key}",
            f'export AWS_SECRET_ACCESS_KEY="$(cat {self.secret_file("s3")})"',
            f"export AWS_DEFAULT_REGION={s3.REGION}",
            *(f"export {k}={v}" for k, v in s3.CHECKSUM_ENV.items()),
            f"export AWS_ENDPOINT_URL_S3={self.s3_url}   # DVC's s3:// remote (boto reads it)",
        ]

    def save(self) -> None:
        tmp = self.path / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.path / STATE_FILE)

    @classmethod
    def load(cls, folder: str | Path) -> StackState:
        f = Path(folder) / STATE_FILE
        if not f.exists():
            raise StackError(f"no team stack recorded in {folder} (no {STATE_FILE}); start one with `make stack`")
        return cls(**json.loads(f.read_text()))


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update({"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"})
    return env


def _ensure_secrets(folder: Path) -> None:
    d = folder / "secrets"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    for name in SECRET_NAMES:
        f = d / name
        if not f.exists():
            f.write_text(secrets.token_urlsafe(18) + "\n")
            os.chmod(f, 0o600)


def _prepare(folder: Path, root: Path) -> StackState:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o711)  # the PostgreSQL account must traverse it; files inside stay private
    (folder / ".gitignore").write_text("*\n")
    _ensure_secrets(folder)
    if (folder / STATE_FILE).exists():
        old = StackState.load(folder)
        if any(_alive(pid) for pid in old.pids.values()):
            raise StackError(f"a team stack already runs from {folder}; `make stack-down` first")
        old.pids = {}
        return old
    names = ("postgres", "s3", "mlflow", "prefect")
    return StackState(folder=str(folder), root=str(root), ports={n: free_port() for n in names})


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_postgres(st: StackState) -> None:
    pg = st.postgres()
    pg.init()
    pg.start()
    pg.ensure_database(mlflow_server.TRACKING_DB)
    pg.ensure_database(mlflow_server.AUTH_DB)
    pg.ensure_database("prefect", ("pg_trgm",))


def start_s3(st: StackState) -> None:
    recording = st.path / "s3-recording.jsonl"
    srv = s3.start_moto(st.ports["s3"], st.path / "logs" / "s3.log", _base_env(), recording)
    st.pids["s3"] = srv.pid
    st.save()
    s3.wait_s3(st.s3(), srv, recording)
    st.s3().ensure_bucket(st.bucket)


def restart(st: StackState, name: str, kill: bool = False) -> None:
    """Stop one server (``kill``: SIGKILL, as a crash would, with a worker's flow runs) and start it again."""
    starters = {"s3": start_s3, "mlflow": start_mlflow, "prefect": start_prefect}
    if name == "postgres":
        st.postgres().stop()
        st.postgres().start()
        return
    pid = st.pids.pop(name, None)
    if pid is not None:
        stop_group(pid, hard=kill)
    if name in starters:
        starters[name](st)
    else:
        start_worker(st, name)


def start_mlflow(st: StackState) -> None:
    pg = st.postgres()
    cfg = mlflow_server.write_auth_config(st.path / "basic_auth.ini", pg.url(mlflow_server.AUTH_DB))
    env = {**_base_env(), **st.s3().env(), **pg.client_env(), "MLFLOW_S3_ENDPOINT_URL": st.s3_url,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": st.secret("mlflow-csrf"),
           # the job executor (GenAI scorers, trace archival) forks a dozen workers we never use
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    srv = mlflow_server.start_mlflow(st.ports["mlflow"], pg.url(mlflow_server.TRACKING_DB),
                                     f"s3://{st.bucket}/mlflow", cfg, st.path / "logs" / "mlflow.log", env,
                                     st.secret("admin"))
    st.pids["mlflow"] = srv.pid
    st.save()
    mlflow_server.wait_mlflow(st.mlflow_url, srv)


def prefect_env(st: StackState) -> dict[str, str]:
    pg = st.postgres()
    return prefect_server.server_env({**_base_env(), **pg.client_env()}, st.path / "prefect",
                                     pg.url("prefect", "postgresql+asyncpg"), st.prefect_api)


def start_prefect(st: StackState) -> None:
    srv = prefect_server.start_prefect(st.ports["prefect"], prefect_env(st), st.path / "logs" / "prefect.log")
    st.pids["prefect"] = srv.pid
    st.save()
    prefect_server.wait_prefect(st.prefect_api, srv)
    prefect_server.ensure_pool(st.pool, prefect_env(st))


def worker_env(st: StackState, user: str = access.PROMOTER) -> dict[str, str]:
    """A worker's environment: the Prefect API, the promoter identity (the pipeline runs the
    gate), S3 credentials for DVC. No server-side database URL."""
    env = {k: v for k, v in prefect_env(st).items() if k not in {"PREFECT_API_DATABASE_CONNECTION_URL", "PGPASSWORD"}}
    env["PREFECT_HOME"] = str(st.path / "prefect-worker")
    return {**env, **st.client_env(user)}


def start_worker(st: StackState, name: str = "worker-1") -> None:
    srv = prefect_server.start_worker(st.pool, worker_env(st), st.path / "logs" / f"{name}.log", Path(st.root), name)
    st.pids[name] = srv.pid
    st.save()


def up(folder: str | Path, root: str | Path = ".", prefect: bool = True, workers: int = 1) -> StackState:
    """Start everything (see the module docstring); on failure, stop what did start."""
    st = _prepare(Path(folder).resolve(), Path(root).resolve())
    st.save()
    try:
        start_postgres(st)
        start_s3(st)
        start_mlflow(st)
        access.setup(st.mlflow_url, st.secret("admin"), {u: st.secret(u) for u in access.IDENTITIES},
                     st.experiment, st.registered_model)
        if prefect:
            start_prefect(st)
            for i in range(workers):
                start_worker(st, f"worker-{i + 1}")
    except BaseException:
        down(st.folder)
        raise
    return st


def down(folder: str | Path) -> list[str]:
    """Stop every recorded server (workers first, PostgreSQL last); returns what was stopped."""
    st = StackState.load(folder)
    stopped = []
    rank = {"prefect": 1, "mlflow": 2, "s3": 3}  # workers (0) first: they talk to the others
    order = sorted(st.pids, key=lambda n: rank.get(n, 0))
    for name in order:
        stop_group(st.pids[name])
        stopped.append(name)
    st.pids = {}
    st.save()
    pg = st.postgres()
    if (pg.data_dir / "postmaster.pid").exists():
        pg.stop()
        stopped.append("postgres")
    return stopped


def remove(folder: str | Path) -> None:
    """Delete the state folder (after ``down``): all data of the local stack is gone."""
    shutil.rmtree(folder, ignore_errors=False)
