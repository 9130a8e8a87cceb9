"""Start, probe and stop the long-running servers of the team stack.

Each server runs in its own process group (``start_new_session``), so stopping it also stops
the workers it forked (uvicorn, gunicorn, the Prefect worker's flow runs). Logs go to one
file per server under the stack's state folder; nothing here prints a command line, because
some carry credentials in their environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from entroad.errors import EntroADError


class StackError(EntroADError):
    """A server of the team stack did not start, answer or stop (the message names it)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None,
               proc: subprocess.Popen | None = None) -> None:
    """Poll ``check`` until true; a dead process or the deadline is a :class:`StackError`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} while starting{_tail(log)}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a probe failing is what we wait out
            pass
        time.sleep(0.5)
    raise StackError(f"{what} did not come up within {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log}:\n" + "\n".join(text)


@dataclass
class Server:
    """One started server: its name, process group leader and log."""

    name: str
    pid: int
    log: Path
    proc: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = 20.0) -> None:
        stop_group(self.pid, timeout, self.proc)


def start(name: str, cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
          cwd: str | Path | None = None, user: str | None = None) -> Server:
    """Launch ``cmd`` in a new session with stdout+stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True, user=user,
        )
    except OSError as e:
        raise StackError(f"cannot start {name} ({cmd[0]}): {e}") from None
    finally:
        out.close()
    return Server(name, proc.pid, log, proc)


def stop_group(pid: int, timeout: float = 20.0, proc: subprocess.Popen | None = None, hard: bool = False) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``timeout``.

    ``hard``: SIGKILL at once, like a crash of the machine, to the group and to every group
    its descendants started (a Prefect worker runs each flow run in a session of its own,
    which a crash takes down too; a graceful stop leaves them to the worker).
    """
    groups = [pid, *_descendant_groups(pid)] if hard else [pid]
    steps = ((signal.SIGKILL, 5.0),) if hard else ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0))
    for sig, wait in steps:
        for g in groups:
            try:
                os.killpg(g, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()
            if not any(_group_alive(g) for g in groups):
                break
            time.sleep(0.2)
        else:
            continue
        break
    if proc is not None:
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass


def _descendant_groups(pid: int) -> list[int]:
    """Process groups of ``pid``'s descendants other than its own."""
    import psutil

    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    groups = []
    for k in kids:
        try:
            g = os.getpgid(k.pid)
        except ProcessLookupError:
            continue
        if g != pid and g not in groups:
            groups.append(g)
    return groups


def _group_alive(pgid: int) -> bool:
    # a leader we started ourselves stays a zombie (and keeps its group "alive") until reaped
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
