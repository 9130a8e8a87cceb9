"""Torch view of a processed dataset: normalised image tensors + masks at the model size.

Images are resized straight to S×S (no crop: a crop could cut the defect out), bicubic with
antialiasing for images and nearest for masks, as in AnomalyCLIP. A record is *pixel-labelled*
when it has a mask, or when it is normal in a dataset that has masks (normal images of
MVTec-style datasets carry no mask file: their mask is empty by definition).

Processed-file layouts (``ingest_params.format_version`` in dataset.json; none recorded = 1):
1 = images resized at ingest (DICOM slices at 518 px), 2 = DICOM slices at native resolution
padded to a square. Both are square or aspect-kept 8-bit images that this loader resizes to
S×S, so both read the same way; a layout this code does not know is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from entroad.data.manifest import ProcessedDataset, Record
from entroad.errors import DatasetError, InputError

READABLE_FORMATS = (1, 2)


def check_format(dataset: ProcessedDataset) -> None:
    """Raise a :class:`DatasetError` naming the re-ingest command when the processed-file
    layout of ``dataset`` is not one this loader reads."""
    version = dataset.meta.ingest_params.get("format_version", 1)
    if version not in READABLE_FORMATS:
        raise DatasetError(
            f"dataset {dataset.name!r} holds processed files in layout {version!r}, which this version cannot "
            f"read (it reads {', '.join(map(str, READABLE_FORMATS))}); re-ingest it with "
            f"`entroad ingest {dataset.name} --force`"
        )


def read_rgb(path: str | Path) -> Image.Image:
    """Open any PNG/JPEG/TIFF (8/16-bit, L, LA, P, RGBA) as 8-bit RGB."""
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return img.convert("RGB")


def image_to_tensor(img: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    img = img.resize((size, size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def mask_to_tensor(path: str | Path, size: int) -> torch.Tensor:
    try:
        m = Image.open(path)
        m.load()
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{path}: cannot read mask ({e})") from None
    m = m.convert("L").resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy((np.asarray(m) > 127).astype(np.float32))


def load_image(
    path: str | Path, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """One image file -> (normalised (3, S, S) tensor, original (H, W))."""
    img = read_rgb(path)
    return image_to_tensor(img, image_size, mean, std), (img.height, img.width)


class ManifestImageDataset(torch.utils.data.Dataset):
    """Items: ``image`` (3,S,S), ``mask`` (S,S) 0/1, ``pixel_label`` bool, ``label`` int,
    ``index`` int (into :attr:`records`), ``orig_size`` (H, W) tensor, ``cls`` str."""

    def __init__(
        self,
        dataset: ProcessedDataset,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        split: str = "test",
        classes: Sequence[str] | None = None,
        records: list[Record] | None = None,
    ):
        check_format(dataset)
        self.dataset = dataset
        self.records = records if records is not None else dataset.select(split, classes)
        self.image_size, self.mean, self.std = image_size, tuple(mean), tuple(std)
        self.has_masks = dataset.has_masks

    def __len__(self) -> int:
        return len(self.records)

    def pixel_labelled(self, rec: Record) -> bool:
        return rec.mask is not None or (rec.label == 0 and self.has_masks)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        image, (h, w) = load_image(self.dataset.path(rec.image), self.image_size, self.mean, self.std)
        if rec.mask is not None:
            mask = mask_to_tensor(self.dataset.path(rec.mask), self.image_size)
        else:
            mask = torch.zeros(self.image_size, self.image_size)
        return {
            "image": image,
            "mask": mask,
            "pixel_label": self.pixel_labelled(rec),
            "label": rec.label,
            "index": i,
            "orig_size": torch.tensor([h, w]),
            "cls": rec.cls,
        }
