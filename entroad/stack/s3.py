"""The S3 API of the local stack: moto in server mode (any S3 or MinIO endpoint in production).

moto keeps buckets in memory. So that the local stack survives a restart of its S3 server
(``make stack-down``/``make stack``, or a crash in the middle of a DVC push), moto records
every request to a file in the state folder and replays the recording when it starts
again. Credentials are the standard ``AWS_*`` variables; moto accepts any.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from entroad.stack.processes import Server, StackError, start, wait_until

log = logging.getLogger(__name__)

REGION = "us-east-1"
# botocore >= 1.36 adds CRC checksums that S3 look-alikes may reject: only send them when required
CHECKSUM_ENV = {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}


@dataclass
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """Client variables: credentials and region (the endpoint goes to each tool's own setting)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": REGION, **CHECKSUM_ENV}

    def client(self):
        import boto3  # the [stack] extra; only the stack talks to S3 directly

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def healthy(self) -> bool:
        import requests

        return requests.get(self.url, timeout=2).status_code < 500

    def ensure_bucket(self, bucket: str) -> None:
        c = self.client()
        names = {b["Name"] for b in c.list_buckets().get("Buckets", [])}
        if bucket not in names:
            c.create_bucket(Bucket=bucket)


def start_moto(port: int, log: Path, env: dict[str, str], recording: Path) -> Server:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise StackError("moto's server is not installed: `pip install -e '.[stack]'` (moto[server])")
    env = {**env, "MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(recording)}
    cmd = [sys.executable, "-m", "entroad.stack.moto_main", "-H", "127.0.0.1", "-p", str(port)]
    return start("S3 (moto)", cmd, log, env=env)


def wait_s3(endpoint: S3Endpoint, server: Server | None, recording: Path | None = None, timeout: float = 60.0) -> None:
    """Wait until moto answers, then replay what an earlier run of it recorded."""
    import requests

    wait_until(endpoint.healthy, timeout, f"S3 API (moto) on {endpoint.url}", server.log if server else None,
               server.proc if server else None)
    if recording is not None and recording.exists() and recording.stat().st_size:
        repair_recording(recording)
        reply = requests.post(endpoint.url + "/moto-api/recorder/replay-recording", timeout=600)
        if not reply.ok:
            raise StackError(f"S3 API (moto) on {endpoint.url} could not restore its data from {recording}: "
                             f"{reply.status_code}")


def repair_recording(recording: Path) -> int:
    """Drop the lines of moto's recording that are not whole JSON; returns how many.

    moto appends one JSON line per request; a server killed while writing one (a crash mid
    upload) leaves it cut short, and moto's replay then fails on it as a whole (HTTP 500).
    The request it held was never answered, so the client sends it again: dropping it loses
    nothing that was acknowledged.
    """
    kept, dropped = [], 0
    with open(recording, "rb") as f:
        for line in f:
            try:
                json.loads(line)
            except ValueError:
                dropped += 1
                continue
            kept.append(line if line.endswith(b"\n") else line + b"\n")
    if dropped:
        tmp = recording.with_name(recording.name + ".tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, recording)
        log.warning("S3 API (moto): dropped %d unfinished request(s) from %s (the server was killed mid-write)",
                    dropped, recording.name)
    return dropped
