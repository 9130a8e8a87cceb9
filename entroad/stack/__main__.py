"""``python -m entroad.stack up|down|env`` (what ``make stack`` / ``make stack-down`` run)."""

from __future__ import annotations

import argparse
import sys

from entroad.errors import EntroADError
from entroad.stack import access, launch

DEFAULT_FOLDER = ".stack"


def _print_up(st: launch.StackState) -> None:
    print(f"team stack running; state in {st.folder} (stop: make stack-down)")
    print(f"  MLflow server   {st.mlflow_url}   (users: admin, {', '.join(access.IDENTITIES)};"
          f" passwords in {st.path / 'secrets'})")
    print(f"  Prefect server  {st.prefect_api.removesuffix('/api')}   (work pool {st.pool!r}, one worker)")
    print(f"  S3 API (moto)   {st.s3_url}   (bucket {st.bucket}: mlflow/ artifacts, dvc/ remote)")
    print(f"  PostgreSQL      127.0.0.1:{st.ports['postgres']}   (databases mlflow, mlflow_auth, prefect)")
    print("\nPaste into your shell (trainer identity; use promoter or viewer likewise):")
    for line in st.export_lines():
        print("  " + line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m entroad.stack", description=__doc__)
    ap.add_argument("action", choices=["up", "down", "env"])
    ap.add_argument("--state", default=DEFAULT_FOLDER, help="state folder (default .stack)")
    ap.add_argument("--user", default=access.TRAINER, choices=access.IDENTITIES, help="identity for `env`")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        if a.action == "up":
            _print_up(launch.up(a.state, ".", workers=a.workers))
        elif a.action == "down":
            stopped = launch.down(a.state)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'} (data kept in {a.state})")
        else:
            print("\n".join(launch.StackState.load(a.state).export_lines(a.user)))
    except EntroADError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
