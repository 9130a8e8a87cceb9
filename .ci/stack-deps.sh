#!/usr/bin/env bash
# What the team-stack tests need on a fresh machine (run as root by .ci/run before `make test-stack`):
# PostgreSQL server binaries from Debian, and the [stack] extras (moto, dvc-s3, psycopg2, mlflow[auth]).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql
fi
make .venv/.installed-stack
