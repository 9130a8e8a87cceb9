"""What to score: a folder of images, one image file, or a DICOM folder (de-identified slices
with pseudonymous ids)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from entroad.config import Params
from entroad.data.dicom.deid import resolve_salt
from entroad.data.dicom.ingest import ingest_dicom
from entroad.data.dicom.options import resolve_dicom_options
from entroad.data.fingerprint import raw_files
from entroad.data.images import IMAGE_EXTENSIONS
from entroad.data.torch_dataset import read_rgb
from entroad.data.versioning import data_root
from entroad.errors import InputError


@dataclass
class PredictItem:
    """One image to score: a stable id and a loader returning an RGB PIL image."""

    id: str
    load: Callable[[], Image.Image]



def _image_extensions() -> tuple[str, ...]:
    return tuple(IMAGE_EXTENSIONS)


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def looks_like_dicom(folder: Path, probe: int = 2000) -> bool:
    """True when the folder holds DICOM files (by extension or the DICM preamble); a DICOM
    export with a few PNG masks or thumbnails beside it is still a DICOM folder."""
    files = raw_files(folder)
    exts = _image_extensions()
    return any(_is_dicom_file(p) for p in files[:probe] if p.suffix.lower() not in exts)


def image_items(folder: Path) -> list[PredictItem]:
    exts = _image_extensions()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))
    # partial, not a lambda: loader workers started with 'spawn' must pickle it
    return [PredictItem(id=p.relative_to(folder).as_posix(), load=partial(read_rgb, p)) for p in files]


SLICES_DIR = ".dicom-slices"


def _source_fingerprint(folder: Path) -> str:
    """Changes when files are added, removed or rewritten (names are hashed, never stored)."""
    import hashlib

    h = hashlib.sha256()
    for p in raw_files(folder):
        st = p.stat()
        h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def dicom_items(
    folder: Path, out: Path, params: Params, image_size: int
) -> tuple[list[PredictItem], list[tuple[str, str]]]:
    """De-identified 2-D slices of every DICOM image below ``folder``, with pseudonymous ids.

    Uses the ingest path of :mod:`entroad.data.dicom` (same display windows, same site salt,
    so ids match those of an ingested dataset): slices are written as bare-pixel PNGs into
    ``out/.dicom-slices`` and reused on a resumed run while the folder is unchanged. Returns
    the items and the skipped files (pseudonymous file id, PHI-free reason).
    """
    staging = out / SLICES_DIR
    index = staging / "slices.json"
    fingerprint = _source_fingerprint(folder)
    cached = json.loads(index.read_text()) if index.is_file() else None
    if not cached or cached.get("fingerprint") != fingerprint or cached.get("size") != image_size:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        options = resolve_dicom_options({"labels": None, "unlabelled": "normal", "size": image_size})
        salt = resolve_salt(options, data_root(params))
        records, skipped, _ = ingest_dicom(folder, staging, options, salt)
        cached = {
            "fingerprint": fingerprint,
            "size": image_size,
            "slices": [r.image for r in records],
            "skipped": [[s.what, s.reason] for s in skipped],
        }
        index.write_text(json.dumps(cached) + "\n")
    items = [
        # "images/ct/stu-…/ser-…/0003.png" -> "ct/stu-…/ser-…/0003": salted pseudonyms only
        PredictItem(id=rel.removeprefix("images/").removesuffix(".png"), load=partial(read_rgb, staging / rel))
        for rel in cached["slices"]
    ]
    return items, [(w, r) for w, r in cached["skipped"]]


def check_input(input_path: str | Path) -> None:
    """Fail at once, before any model is loaded, on an input that holds nothing to score."""
    p = Path(input_path).expanduser()
    if p.is_file():
        if _is_dicom_file(p):
            raise InputError(f"{p.name} is a DICOM file: pass the folder holding the series")
        return
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder; --input takes a folder of images, a DICOM folder or one image")
    exts = _image_extensions()
    files = raw_files(p)
    if not any(f.suffix.lower() in exts and not f.name.startswith(".") for f in files) and not looks_like_dicom(p):
        raise InputError(
            f"{p}: no images found (looked for {', '.join(exts)} and DICOM files); nothing was scored or written"
        )


def collect_items(
    input_path: str | Path, out: Path, params: Params, image_size: int
) -> tuple[list[PredictItem], list[tuple[str, str]], str]:
    """The images under ``input_path`` (a folder of images, a DICOM folder, or one image
    file), the inputs skipped before scoring, and the input kind (``images`` / ``dicom``)."""
    p = Path(input_path).expanduser()
    if p.is_file():
        if _is_dicom_file(p):
            raise InputError(f"{p.name} is a DICOM file: pass the folder holding the series")
        return [PredictItem(id=p.name, load=partial(read_rgb, p))], [], "images"
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder")
    if looks_like_dicom(p):
        items, skipped = dicom_items(p, out, params, image_size)
        return items, skipped, "dicom"
    items = image_items(p)
    if not items:
        raise InputError(f"{p}: no images found (looked for {', '.join(_image_extensions())} and DICOM files)")
    return items, [], "images"

