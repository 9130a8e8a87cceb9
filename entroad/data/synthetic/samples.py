"""Bundled sample data: raw folders written by the generators, described in params.yaml.

A dataset with a ``generate`` entry gets its raw folder (``source``) from one of these
recipes; the bytes depend only on the recipe, so regenerating changes nothing for DVC::

    generate: {kind: textures-mvtec, families: [stripes, grid], size: 128, seed: 0, ...}
    generate: {kind: surfaces-visa, families: [wood, marble], n_normal: 8, n_anomalous: 12, ...}
    generate: {kind: dicom-study, size: 128, ct_slices: 20, mr_slices: 16, mf_frames: 12, seed: 0}
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from entroad.config import DatasetSpec
from entroad.data.synthetic.dicom_study import write_dicom_study
from entroad.data.synthetic.layouts import write_mvtec_layout, write_visa_layout
from entroad.errors import ConfigError

log = logging.getLogger(__name__)

GENERATORS: dict[str, Callable[..., int]] = {
    "textures-mvtec": write_mvtec_layout,
    "surfaces-visa": write_visa_layout,
    "dicom-study": write_dicom_study,
}


def _call(kind: str, root: Path, args: dict[str, Any]) -> int:
    fn = GENERATORS.get(kind)
    if fn is None:
        raise ConfigError(f"generate.kind {kind!r} unknown; choose one of {sorted(GENERATORS)}")
    allowed = set(inspect.signature(fn).parameters) - {"root"}
    unknown = set(args) - allowed
    if unknown:
        raise ConfigError(f"generate ({kind}): unknown argument(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    try:
        return fn(root, **args)
    except TypeError as e:
        raise ConfigError(f"generate ({kind}): {e}") from None


def generate_raw(spec: DatasetSpec, force: bool = False) -> bool:
    """Write ``spec.source`` from ``spec.generate``; False if it already exists (and not force).

    Written into a temporary sibling and renamed, so an interrupted run leaves no partial
    raw folder behind.
    """
    if spec.generate is None:
        return False
    if not spec.source:
        raise ConfigError(f"data.datasets.{spec.name}: `generate` needs a `source` folder to write to")
    dest = Path(spec.source).expanduser()
    dest = dest if dest.is_absolute() else Path.cwd() / dest
    if dest.exists() and any(dest.iterdir()) and not force:
        return False
    args = dict(spec.generate)
    kind = str(args.pop("kind", ""))
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        n = _call(kind, tmp, args)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: wrote %d sample images into %s", spec.name, n, spec.source)
    return True
