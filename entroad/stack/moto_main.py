"""moto's S3 API server (``moto_server``) with its request recording safe under concurrency.

The stack restores S3 after a restart by replaying moto's recording (one JSON line per
request). moto's threaded server writes each line with two unsynchronised writes from
whichever thread handles the request, so concurrent uploads (``dvc push`` runs several) could
interleave two entries on one line, and a replay then failed or lost acknowledged objects.
One lock around the recorder makes every entry a whole line; the server is otherwise moto's.

    python -m entroad.stack.moto_main -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import threading
from typing import Any

from moto.moto_api._internal.recorder.models import Recorder
from moto.server import main

_LOCK = threading.Lock()
_record = Recorder._record_request


def _record_request(self: Recorder, request: Any, body: bytes | None = None) -> None:
    with _LOCK:
        _record(self, request, body)


Recorder._record_request = _record_request  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
