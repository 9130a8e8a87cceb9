"""Scoring batches of prediction inputs: decode (in loader workers), score, draw overlays, and
the rows of ``scores.csv``. Shared by the serial run and the shard tasks of a Dask run, so
both write the same rows for the same images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from entroad.data.torch_dataset import image_to_tensor
from entroad.errors import EntroADError, EvaluationError
from entroad.predict.inputs import PredictItem
from entroad.predict.overlays import fit_panel, overlay_image, overlay_name

SCORE_COLUMNS = ["id", "score", "flagged", "threshold", "overlay", "random_init"]

Decoded = tuple[str, torch.Tensor | None, Image.Image | None, str | None]


class ItemDataset(torch.utils.data.Dataset):
    """Decodes items in loader workers; a failure travels as a message, not an exception."""

    def __init__(self, items: Sequence[PredictItem], size: int, mean, std, keep_image: bool):
        self.items, self.size, self.mean, self.std, self.keep = items, size, mean, std, keep_image

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Decoded:
        it = self.items[i]
        try:
            img = it.load()
        except (EntroADError, OSError, ValueError) as e:
            return it.id, None, None, str(e)
        x = image_to_tensor(img, self.size, self.mean, self.std)
        return it.id, x, fit_panel(img) if self.keep else None, None


def item_loader(items: Sequence[PredictItem], net: Any, batch_size: int, num_workers: int, overlays: bool):
    """Batches of decoded items (lists, so that failures and PIL panels travel along)."""
    info = net.backbone_info
    return torch.utils.data.DataLoader(
        ItemDataset(items, net.image_size, info.mean, info.std, overlays),
        batch_size=batch_size,
        num_workers=num_workers if len(items) > batch_size else 0,
        collate_fn=list,
    )


def score_chunk(
    net: Any, chunk: Sequence[Decoded], threshold: float | None, random_init: bool, out: Path
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Score one decoded batch: its ``scores.csv`` rows (overlays written under ``out``) and
    its unreadable files ``(id, reason)``, both in batch order."""
    failures = [(item_id, err) for item_id, _, _, err in chunk if err is not None]
    ok = [c for c in chunk if c[3] is None]
    rows: list[dict[str, Any]] = []
    if not ok:
        return rows, failures
    o = net.predict(torch.stack([x for _, x, _, _ in ok]).to(net.device))
    scores = o.score.float().cpu().numpy()
    if not np.isfinite(scores).all():
        bad = ok[int(np.argmax(~np.isfinite(scores)))][0]
        raise EvaluationError(f"non-finite score for {bad}: the model output is invalid")
    for j, (item_id, _, shown, _) in enumerate(ok):
        s = float(scores[j])
        flagged = None if threshold is None else s > threshold
        rel = ""
        if shown is not None:
            amap = F.interpolate(o.anomaly_map[j : j + 1, None].float(), size=(shown.height, shown.width),
                                 mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
            rel = f"overlays/{overlay_name(item_id)}"
            overlay_image(shown, amap, s, flagged, random_init).save(out / rel)
        rows.append({
            "id": item_id, "score": f"{s:.6f}", "flagged": "" if flagged is None else int(flagged),
            "threshold": "" if threshold is None else threshold, "overlay": rel, "random_init": int(random_init),
        })
    return rows, failures
