"""The scoring run of site prediction: score every input, write ``scores.csv``, overlays,
``failures.csv`` and ``predict.json``; resumable batch by batch."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from entroad import __version__
from entroad.backbone import warn_random_init
from entroad.config import Params, load_params
from entroad.data.torch_dataset import image_to_tensor
from entroad.errors import EntroADError, EvaluationError, InputError
from entroad.evaluation.results import ModelIdentity
from entroad.logs import progress_bar
from entroad.model_source import load_models, resolved_checkpoint
from entroad.predict.inputs import SLICES_DIR, PredictItem, check_input, collect_items
from entroad.predict.operating_point import operating_point_of, resolve_threshold
from entroad.predict.overlays import fit_panel, overlay_image, overlay_name

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
FAILURES_FILE = "failures.csv"
META_FILE = "predict.json"
SCORE_COLUMNS = ["id", "score", "flagged", "threshold", "overlay", "random_init"]


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
    operating_point: dict | None = None  # the full point behind a threshold from 'model' or a file




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
        it = self.items[i]
        try:
            img = it.load()
        except (EntroADError, OSError, ValueError) as e:
            return it.id, None, None, str(e)
        x = image_to_tensor(img, self.size, self.mean, self.std)
        return it.id, x, fit_panel(img) if self.keep else None, None


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
    params = params or load_params()
    out = Path(out_dir)
    check_input(input_path)  # before the model loads: an empty input costs nothing

    op = None
    if isinstance(model, str | Path):
        with resolved_checkpoint(model, params) as ckpt:
            net = load_models(ckpt, {}, params, device, weights)["full"]
            thr, thr_source = resolve_threshold(threshold, ckpt, net.checkpoint_config, threshold_dataset)
            op = operating_point_of(thr_source, ckpt, threshold_dataset)  # read while a downloaded model exists
        source = str(model)
    else:
        net, source = model.eval(), "<in-memory model>"
        thr, thr_source = resolve_threshold(threshold, None, getattr(net, "checkpoint_config", None), threshold_dataset)
    out.mkdir(parents=True, exist_ok=True)  # only once model and threshold are valid: no empty folder on failure
    if restart:
        for name in (SCORES_FILE, FAILURES_FILE, META_FILE):
            (out / name).unlink(missing_ok=True)
        for name in ("overlays", SLICES_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
    identity = ModelIdentity.of(net, source)
    info = net.backbone_info
    items, skipped_inputs, kind = collect_items(input_path, out, params, net.image_size)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise InputError(f"{input_path}: duplicate image ids")
    if identity.random_init:
        warn_random_init(info.name, log)
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
        operating_point=op,
    )
