"""Bundled procedural industrial data: textures with localised and diffuse defects.

Deterministic for a given seed (same bytes on every run, so DVC sees no change), offline,
numpy + scipy + Pillow only. Three ways to use it:

* :func:`make_sample` - one (image, mask) pair in memory;
* :func:`write_processed_dataset` - a ready processed dataset (manifest + PNGs), for tests;
* :func:`write_mvtec_layout` / :func:`write_visa_layout` - RAW data in the real MVTec AD /
  VisA layouts, so the bundled samples go through the real format readers.
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from entroad.data.manifest import DatasetMeta, ProcessedDataset, Record, write_manifest
from entroad.data.synthetic.defects import APPLY, DEFECTS, DIFFUSE_DEFECTS, LOCALISED_DEFECTS
from entroad.data.synthetic.textures import FAMILIES, draw_texture, render

__all__ = [
    "FAMILIES",
    "LOCALISED_DEFECTS",
    "DIFFUSE_DEFECTS",
    "DEFECTS",
    "make_sample",
    "sample_rng",
    "write_processed_dataset",
    "write_mvtec_layout",
    "write_visa_layout",
]


def make_sample(
    family: str, defect: str | None, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One textured image with an optional defect.

    Returns ``(image, mask)``: RGB uint8 ``(size, size, 3)`` and uint8 ``(size, size)`` with
    values 0/255 marking the affected pixels (all zero when ``defect`` is None).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    if defect is not None and defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; choose one of {DEFECTS} or None")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    texture = draw_texture(family, size, rng)
    img = render(texture, size)
    mask = np.zeros((size, size), bool)
    if defect is not None:
        img, mask = APPLY[defect](img, texture, rng)
        if not mask.any():  # cannot happen with the margins used, but never emit an empty defect
            raise RuntimeError(f"{defect} on {family} produced an empty mask")
    img8 = np.clip(np.rint(np.clip(img, 0, 1) * 255), 0, 255).astype(np.uint8)
    return img8, mask.astype(np.uint8) * 255


def sample_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys`` (stable per image, any order)."""
    words = [seed & 0xFFFFFFFF] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _save_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def _defect_cycle(n: int, defects: tuple[str, ...] | list[str]) -> list[str]:
    return [defects[i % len(defects)] for i in range(n)]


def write_processed_dataset(
    root: Path,
    name: str,
    families: list[str],
    n_normal: int,
    n_anomalous: int,
    size: int,
    seed: int,
    split: str = "test",
    domain: str = "industrial",
) -> ProcessedDataset:
    """Write a processed dataset into ``root / name`` and return it loaded.

    Per family: ``n_normal`` defect-free images (``mask`` None, anomaly_type ``"good"``) and
    ``n_anomalous`` defective ones cycling through :data:`DEFECTS` (with masks). Class name
    = family.
    """
    out = Path(root) / name
    records: list[Record] = []
    for fam in families:
        for kind, n in (("good", n_normal), ("anomalous", n_anomalous)):
            defects = _defect_cycle(n, DEFECTS) if kind == "anomalous" else [None] * n
            for i, defect in enumerate(defects):
                img, mask = make_sample(fam, defect, size, sample_rng(seed, fam, kind, i))
                atype = defect or "good"
                rel = f"images/{fam}/{split}/{atype}/{i:03d}.png"
                _save_png(img, out / rel)
                mrel = None
                if defect is not None:
                    mrel = f"masks/{fam}/{split}/{atype}/{i:03d}.png"
                    _save_png(mask, out / mrel)
                records.append(
                    Record(image=rel, label=int(defect is not None), cls=fam, split=split, mask=mrel,
                           source_id=f"synthetic:{fam}:{kind}:{i}", anomaly_type=atype)
                )
    meta = DatasetMeta(name=name, domain=domain, classes=[], counts={}, source_format="synthetic",
                       ingest_params={"families": list(families), "n_normal": n_normal,
                                      "n_anomalous": n_anomalous, "size": size, "seed": seed})
    write_manifest(out, records, meta)
    return ProcessedDataset.load(out)


def write_mvtec_layout(
    root: Path,
    families: list[str],
    n_train_good: int,
    n_test_good: int,
    n_test_per_defect: int,
    size: int,
    seed: int,
    defects: tuple[str, ...] | list[str] = DEFECTS,
) -> int:
    """Raw data exactly as MVTec AD ships it; returns the number of images written.

    ``<class>/train/good/000.png``, ``<class>/test/good/000.png``,
    ``<class>/test/<defect>/000.png``, ``<class>/ground_truth/<defect>/000_mask.png``.
    """
    root = Path(root)
    count = 0
    for fam in families:
        for split, n in (("train", n_train_good), ("test", n_test_good)):
            for i in range(n):
                img, _ = make_sample(fam, None, size, sample_rng(seed, fam, split, "good", i))
                _save_png(img, root / fam / split / "good" / f"{i:03d}.png")
                count += 1
        for defect in defects:
            for i in range(n_test_per_defect):
                img, mask = make_sample(fam, defect, size, sample_rng(seed, fam, "test", defect, i))
                _save_png(img, root / fam / "test" / defect / f"{i:03d}.png")
                _save_png(mask, root / fam / "ground_truth" / defect / f"{i:03d}_mask.png")
                count += 1
    return count


def write_visa_layout(
    root: Path,
    families: list[str],
    n_normal: int,
    n_anomalous: int,
    size: int,
    seed: int,
    n_train_normal: int = 0,
) -> int:
    """Raw data exactly as VisA ships it (after its own 1-class split); returns images written.

    ``<class>/Data/Images/Normal/0000.JPG``, ``<class>/Data/Images/Anomaly/000.JPG``,
    ``<class>/Data/Masks/Anomaly/000.png`` (mask values 0/1... as in VisA: any non-zero is
    defect), ``<class>/image_anno.csv`` and ``split_csv/1cls.csv`` with the columns
    ``object,split,label,image,mask``. The defect kind is recorded in image_anno.csv.
    """
    root = Path(root)
    rows: list[list[str]] = []
    count = 0
    for fam in families:
        anno = [["image", "label", "mask"]]
        for i in range(n_normal + n_train_normal):
            img, _ = make_sample(fam, None, size, sample_rng(seed, fam, "normal", i))
            rel = f"{fam}/Data/Images/Normal/{i:04d}.JPG"
            _save_jpg(img, root / rel)
            split = "train" if i < n_train_normal else "test"
            rows.append([fam, split, "normal", rel, ""])
            anno.append([rel, "normal", ""])
            count += 1
        for i, defect in enumerate(_defect_cycle(n_anomalous, DEFECTS)):
            img, mask = make_sample(fam, defect, size, sample_rng(seed, fam, "anomaly", i))
            rel = f"{fam}/Data/Images/Anomaly/{i:03d}.JPG"
            mrel = f"{fam}/Data/Masks/Anomaly/{i:03d}.png"
            _save_jpg(img, root / rel)
            _save_png((mask > 0).astype(np.uint8), root / mrel)  # VisA masks are 0/1, not 0/255
            rows.append([fam, "test", "anomaly", rel, mrel])
            anno.append([rel, defect, mrel])
            count += 1
        _write_csv(root / fam / "image_anno.csv", anno)
    _write_csv(root / "split_csv" / "1cls.csv", [["object", "split", "label", "image", "mask"], *rows])
    return count


def _save_jpg(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="JPEG", quality=95)


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
