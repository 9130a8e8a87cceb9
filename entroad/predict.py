"""Site prediction: score an unlabelled folder of images (or DICOM series) with a trained
model, for a hospital or plant team.

Writes into ``out``:

* ``scores.csv`` — one row per image: ``id, score, flagged, threshold, overlay, random_init``
  (ids are paths relative to the input folder; for DICOM the pseudonymous ids of the
  de-identification, never a path, name or UID);
* ``overlays/<id>.png`` — the image beside its anomaly-map overlay, at the original size;
* ``failures.csv`` — files that could not be read, with the reason (they are retried on the
  next run);
* ``predict.json`` — model identity, threshold and its origin, counts.

Resumable: rows are appended and flushed batch by batch; a rerun skips ids already in
``scores.csv`` (and refuses to mix in scores of a different model or threshold).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from entroad import __version__
from entroad.config import Params, load_params
from entroad.errors import EntroADError, EvaluationError, InputError
from entroad.logs import progress_bar

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
FAILURES_FILE = "failures.csv"
META_FILE = "predict.json"
OPERATING_POINT_FILE = "operating_point.json"
SCORE_COLUMNS = ["id", "score", "flagged", "threshold", "overlay", "random_init"]
OVERLAY_MAX_SIDE = 1024  # overlays of huge scans are capped (each panel) to keep folders small
OVERLAY_MIN_SIDE = 256  # thumbnails are enlarged so the overlay (and its caption) stays readable


@dataclass
class PredictItem:
    """One image to score: a stable id and a loader returning an RGB PIL image."""

    id: str
    load: Callable[[], Image.Image]


@dataclass
class PredictResult:
    out_dir: Path
    scores_csv: Path
    n_total: int
    n_scored: int  # by this call
    n_skipped: int  # already scored by an earlier call
    failures: list[tuple[str, str]] = field(default_factory=list)
    threshold: float | None = None
    threshold_source: str | None = None
    random_init: bool = False


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def _image_extensions() -> tuple[str, ...]:
    try:
        from entroad.data.images import IMAGE_EXTENSIONS

        return tuple(IMAGE_EXTENSIONS)
    except ImportError:  # pragma: no cover
        return (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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
    from entroad.data.fingerprint import raw_files

    files = raw_files(folder)
    exts = _image_extensions()
    return any(_is_dicom_file(p) for p in files[:probe] if p.suffix.lower() not in exts)


def image_items(folder: Path) -> list[PredictItem]:
    from entroad.data.torch_dataset import read_rgb

    exts = _image_extensions()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))
    # partial, not a lambda: loader workers started with 'spawn' must pickle it
    return [PredictItem(id=p.relative_to(folder).as_posix(), load=partial(read_rgb, p)) for p in files]


SLICES_DIR = ".dicom-slices"


def _source_fingerprint(folder: Path) -> str:
    """Changes when files are added, removed or rewritten (names are hashed, never stored)."""
    import hashlib

    from entroad.data.fingerprint import raw_files

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
    from entroad.data.dicom.deid import resolve_salt
    from entroad.data.dicom.ingest import ingest_dicom
    from entroad.data.dicom.options import resolve_dicom_options
    from entroad.data.torch_dataset import read_rgb
    from entroad.data.versioning import data_root

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


def collect_items(
    input_path: str | Path, out: Path, params: Params, image_size: int
) -> tuple[list[PredictItem], list[tuple[str, str]], str]:
    """The images under ``input_path`` (a folder of images, a DICOM folder, or one image
    file), the inputs skipped before scoring, and the input kind (``images`` / ``dicom``)."""
    p = Path(input_path).expanduser()
    if p.is_file():
        from entroad.data.torch_dataset import read_rgb

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


# --------------------------------------------------------------------------------------------
# Threshold
# --------------------------------------------------------------------------------------------
def _threshold_from_json(path: Path, dataset: str | None) -> tuple[float, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--threshold {path}: cannot read ({e})") from None
    if "threshold" in data:  # an operating_point.json
        return float(data["threshold"]), f"{path}"
    ops = {d["name"]: d["operating_point"] for d in data.get("datasets", []) if d.get("operating_point")}
    if not ops:
        raise InputError(f"--threshold {path}: no operating point in this file (an evaluation results.json?)")
    if dataset is None:
        if len(ops) > 1:
            raise InputError(f"--threshold {path} has operating points for {sorted(ops)}: choose one with --threshold-dataset")
        dataset = next(iter(ops))
    if dataset not in ops:
        raise InputError(f"--threshold {path}: no operating point for dataset {dataset!r} (has {sorted(ops)})")
    op = ops[dataset]
    return float(op["threshold"]), f"{path} [{dataset}: {op['target']} {op['target_value']}]"


def resolve_threshold(
    threshold: float | str | None, checkpoint_dir: Path | None, checkpoint_config: dict | None, dataset: str | None = None
) -> tuple[float | None, str | None]:
    """A number, ``"model"`` (the checkpoint's ``operating_point.json`` or its config's
    ``operating_point``), or a path to an ``operating_point.json`` / evaluation ``results.json``."""
    if threshold is None or threshold == "":
        return None, None
    if isinstance(threshold, int | float):
        return float(threshold), "given"
    text = str(threshold).strip()
    try:
        return float(text), "given"
    except ValueError:
        pass
    if text == "model":
        if checkpoint_dir is not None and (checkpoint_dir / OPERATING_POINT_FILE).is_file():
            return _threshold_from_json(checkpoint_dir / OPERATING_POINT_FILE, dataset)
        op = (checkpoint_config or {}).get("operating_point")
        if op and "threshold" in op:
            return float(op["threshold"]), "model checkpoint config"
        raise InputError(
            "--threshold model: this model has no operating point. Evaluate it on labelled data of your "
            "domain (`entroad evaluate ... --save-operating-point`) or pass a number or a results.json"
        )
    path = Path(text).expanduser()
    if path.is_file():
        return _threshold_from_json(path, dataset)
    raise InputError(f"--threshold {text!r}: expected a number, 'model', or a path to results.json/operating_point.json")


# --------------------------------------------------------------------------------------------
# Overlays
# --------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def overlay_name(item_id: str) -> str:
    """``sub/a.jpg`` -> ``sub__a_jpg.png`` (flat, unique per id, filesystem-safe)."""
    return _UNSAFE.sub("_", item_id.replace("/", "__").replace(".", "_")).strip("_") + ".png"


def overlay_image(image: Image.Image, anomaly_map: np.ndarray, score: float, flagged: bool | None, random_init: bool) -> Image.Image:
    """The image beside a jet overlay of its anomaly map (map in [0, 1] at the image's size)."""
    from matplotlib import colormaps

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    heat = colormaps["jet"](np.clip(anomaly_map, 0, 1))[..., :3]
    blend = 0.55 * rgb + 0.45 * heat
    h, w = rgb.shape[:2]
    band = 34
    canvas = Image.new("RGB", (2 * w + 6, h + band), "white")
    canvas.paste(image.convert("RGB"), (0, band))
    canvas.paste(Image.fromarray((blend * 255).astype(np.uint8)), (w + 6, band))
    draw = ImageDraw.Draw(canvas)
    verdict = "" if flagged is None else ("  FLAGGED" if flagged else "  below threshold")
    draw.text((4, 3), f"score {score:.4f}{verdict}", fill=(179, 38, 30) if flagged else (0, 0, 0))
    if random_init:
        draw.text((4, 18), "RANDOM-INIT BACKBONE: not a real detection", fill=(179, 38, 30))
    return canvas


def _fit(image: Image.Image) -> Image.Image:
    """Overlay panel size: the original, capped for huge scans and raised for thumbnails."""
    w, h = image.size
    scale = min(OVERLAY_MAX_SIDE / max(w, h), max(1.0, OVERLAY_MIN_SIDE / min(w, h)))
    if abs(scale - 1.0) < 1e-9:
        return image
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)


# --------------------------------------------------------------------------------------------
# Resumable output
# --------------------------------------------------------------------------------------------
def _done_ids(scores: Path) -> set[str]:
    if not scores.is_file():
        return set()
    with open(scores, newline="") as f:
        return {row["id"] for row in csv.DictReader(f) if row.get("id")}


def _check_resume(out: Path, meta: dict[str, Any]) -> None:
    old_path = out / META_FILE
    if not old_path.is_file() or not (out / SCORES_FILE).is_file():
        return
    old = json.loads(old_path.read_text())

    def key(m: dict[str, Any]) -> dict[str, Any]:
        model = m.get("model", {})
        return {
            "weights": model.get("weights_sha256"),
            "options": model.get("options"),
            "image size": m.get("image_size"),
            "threshold": m.get("threshold"),
        }

    diff = [k for k, v in key(old).items() if key(meta)[k] != v]
    if diff:
        raise InputError(
            f"{out} holds scores from a different model or threshold ({', '.join(diff)} differ); "
            "use another --out folder or --restart to discard them"
        )


class _ItemDataset(torch.utils.data.Dataset):
    """Decodes items in loader workers; a failure travels as a message, not an exception."""

    def __init__(self, items: Sequence[PredictItem], size: int, mean, std, keep_image: bool):
        self.items, self.size, self.mean, self.std, self.keep = items, size, mean, std, keep_image

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor | None, Image.Image | None, str | None]:
        from entroad.data.torch_dataset import image_to_tensor

        it = self.items[i]
        try:
            img = it.load()
        except (EntroADError, OSError, ValueError) as e:
            return it.id, None, None, str(e)
        x = image_to_tensor(img, self.size, self.mean, self.std)
        return it.id, x, _fit(img) if self.keep else None, None


def predict(
    model: str | Path | Any,
    input_path: str | Path,
    out_dir: str | Path,
    *,
    params: Params | None = None,
    threshold: float | str | None = None,
    threshold_dataset: str | None = None,
    batch_size: int | None = None,
    overlays: bool = True,
    restart: bool = False,
    device: str | torch.device | None = None,
    weights: str | None = None,
    progress: bool = True,
) -> PredictResult:
    """Score every image under ``input_path``; see the module docstring for the outputs.

    ``threshold``: None (scores only), a number, ``"model"`` or a path to an evaluation's
    ``results.json`` / an ``operating_point.json``; images with ``score > threshold`` are flagged.
    """
    from entroad.evaluate import ModelIdentity
    from entroad.model_source import load_models, resolved_checkpoint

    params = params or load_params()
    out = Path(out_dir)
    if not Path(input_path).expanduser().exists():
        raise InputError(f"{input_path}: no such file or folder")
    out.mkdir(parents=True, exist_ok=True)
    if restart:
        for name in (SCORES_FILE, FAILURES_FILE, META_FILE):
            (out / name).unlink(missing_ok=True)
        for name in ("overlays", SLICES_DIR):
            shutil.rmtree(out / name, ignore_errors=True)

    if isinstance(model, str | Path):
        with resolved_checkpoint(model, params) as ckpt:
            net = load_models(ckpt, {}, params, device, weights)["full"]
            thr, thr_source = resolve_threshold(threshold, ckpt, net.checkpoint_config, threshold_dataset)
        source = str(model)
    else:
        net, source = model.eval(), "<in-memory model>"
        thr, thr_source = resolve_threshold(threshold, None, getattr(net, "checkpoint_config", None), threshold_dataset)
    identity = ModelIdentity.of(net, source)
    info = net.backbone_info
    items, skipped_inputs, kind = collect_items(input_path, out, params, net.image_size)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise InputError(f"{input_path}: duplicate image ids")
    if identity.random_init:
        from entroad.backbone import RANDOM_INIT_BANNER

        log.warning(RANDOM_INIT_BANNER.format(name=info.name))
    meta = {
        "entroad_version": __version__,
        "model": identity.to_json(),
        "random_init": identity.random_init,
        "threshold": thr,
        "threshold_source": thr_source,
        "rule": "flagged if score > threshold",
        "input_kind": kind,
        "image_size": net.image_size,
    }
    _check_resume(out, meta)
    done = _done_ids(out / SCORES_FILE)
    todo = [it for it in items if it.id not in done]
    meta["n_total"] = len(items)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if overlays:
        (out / "overlays").mkdir(exist_ok=True)

    new_scores = not (out / SCORES_FILE).is_file()
    failures: list[tuple[str, str]] = list(skipped_inputs)
    bs = batch_size or params.evaluation.batch_size
    size = net.image_size
    scored = 0
    loader = torch.utils.data.DataLoader(
        _ItemDataset(todo, size, info.mean, info.std, overlays),
        batch_size=bs,
        num_workers=params.evaluation.num_workers if len(todo) > bs else 0,
        collate_fn=list,
    )
    with open(out / SCORES_FILE, "a", newline="") as fs, progress_bar("[bold]predict[/]", enabled=progress) as bar:
        writer = csv.DictWriter(fs, fieldnames=SCORE_COLUMNS, lineterminator="\n")
        if new_scores:
            writer.writeheader()
        task = bar.add_task("predict", total=len(todo))
        for chunk in loader:
            failures += [(i, err) for i, _, _, err in chunk if err is not None]
            ok = [c for c in chunk if c[3] is None]
            if ok:
                o = net.predict(torch.stack([x for _, x, _, _ in ok]).to(net.device))
                scores = o.score.float().cpu().numpy()
                if not np.isfinite(scores).all():
                    bad = ok[int(np.argmax(~np.isfinite(scores)))][0]
                    raise EvaluationError(f"non-finite score for {bad}: the model output is invalid")
                for j, (item_id, _, shown, _) in enumerate(ok):
                    s = float(scores[j])
                    flagged = None if thr is None else s > thr
                    rel = ""
                    if shown is not None:
                        amap = F.interpolate(o.anomaly_map[j : j + 1, None].float(), size=(shown.height, shown.width),
                                             mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
                        rel = f"overlays/{overlay_name(item_id)}"
                        overlay_image(shown, amap, s, flagged, identity.random_init).save(out / rel)
                    writer.writerow({
                        "id": item_id, "score": f"{s:.6f}", "flagged": "" if flagged is None else int(flagged),
                        "threshold": "" if thr is None else thr, "overlay": rel, "random_init": int(identity.random_init),
                    })
                    scored += 1
                fs.flush()  # a crash loses at most the current batch
            bar.advance(task, len(chunk))
    if failures:
        with open(out / FAILURES_FILE, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "reason"])
            w.writerows(failures)
        log.warning("%d file(s) could not be read; see %s", len(failures), out / FAILURES_FILE)
    else:
        (out / FAILURES_FILE).unlink(missing_ok=True)
    meta["n_scored_total"] = len(done) + scored
    meta["n_failed"] = len(failures)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return PredictResult(
        out_dir=out,
        scores_csv=out / SCORES_FILE,
        n_total=len(items),
        n_scored=scored,
        n_skipped=len(done & set(ids)),
        failures=failures,
        threshold=thr,
        threshold_source=thr_source,
        random_init=identity.random_init,
    )


def save_operating_point(result, checkpoint_dir: str | Path, dataset: str | None = None) -> Path:
    """Store an evaluation's operating point as ``operating_point.json`` in a checkpoint
    folder, so that ``predict --threshold model`` can use it."""
    ops = [d for d in result.datasets if d.operating_point is not None]
    if dataset is not None:
        ops = [d for d in ops if d.name == dataset]
    if len(ops) != 1:
        names = [d.name for d in result.datasets if d.operating_point is not None]
        raise InputError(
            f"choose the dataset whose operating point the model should carry (have {names})"
            if len(ops) > 1 else f"no operating point for {dataset or 'any dataset'} (have {names})"
        )
    d = ops[0]
    path = Path(checkpoint_dir) / OPERATING_POINT_FILE
    payload = {
        **d.operating_point.to_json(),
        "dataset": d.name,
        "data_version": d.data_version,
        "weights_sha256": result.model.weights_sha256,
        "random_init": result.model.random_init,
        "created": result.created,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
