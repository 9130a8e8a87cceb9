"""What a format reader produces: a list of raw items plus the files it had to skip.

A reader only understands a layout (folder names, CSVs, mask naming). Decoding, checks
(corrupt files, mask sizes, duplicates) and writing are shared by every reader and live in
:mod:`entroad.data.convert`, so all formats fail the same way on the same bad input.
A format whose files are not plain images (DICOM) brings its own ``convert`` and
``prepare`` (options that hold a secret, raw paths that must not appear in caches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from entroad.data.images import is_image
from entroad.data.manifest import Record, Skip
from entroad.errors import ConfigError, DatasetError, did_you_mean

LABEL_FROM_MASK = -1  # RawItem.label when the layout's mask decides it (e.g. KolektorSDD2)


@dataclass(frozen=True)
class RawItem:
    """One raw image and what the layout says about it."""

    image: Path  # absolute path of the raw image
    label: int
    cls: str
    split: str = "test"
    mask: Path | None = None
    anomaly_type: str | None = None
    rel: str = ""  # path relative to the source folder (source id and output name)


@dataclass
class Scan:
    items: list[RawItem] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    # None: as the format says; False: this copy has no masks (image-level only).
    masks_expected: bool | None = None

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append(Skip(what, reason))


@dataclass(frozen=True)
class Prepared:
    """The options of one dataset as its format resolved them."""

    options: dict[str, Any]  # what the reader uses (may hold a secret)
    public: dict[str, Any]  # what dataset.json and the input fingerprint record
    path_key: Callable[[str], str] | None = None  # raw path -> cache key (None: the path itself)
    secret: bytes = b""  # format-private state the converter needs (the DICOM salt)


# ``convert(source, out_dir, prepared, progress bar) -> (records, skipped, audit extra)``
Converter = Callable[[Path, Path, Prepared, Any], tuple[list[Record], list[Skip], dict[str, Any]]]


@dataclass(frozen=True)
class ImageFormat:
    """A raw layout reader: ``scan(source, options) -> Scan``, or its own ``convert``."""

    name: str
    domain: str  # default domain of datasets in this layout
    scan: Callable[[Path, dict[str, Any]], Scan] | None = None  # None: ``convert`` does it all
    options: dict[str, Any] = field(default_factory=dict)  # allowed options and defaults
    masks: bool = True  # anomalous images are expected to come with a pixel mask
    description: str = ""
    convert: Converter | None = None  # replaces scan + the shared image converter
    # (spec options, data root, dataset has a sample recipe) -> Prepared; None: resolve_options
    prepare_options: Callable[[dict[str, Any], Path, bool], Prepared] | None = None

    def prepare(self, given: dict[str, Any], data_root: Path, generated: bool = False) -> Prepared:
        if self.prepare_options is not None:
            return self.prepare_options(given, data_root, generated)
        options = self.resolve_options(given)
        return Prepared(options, options)

    def option_defaults(self) -> dict[str, Any]:
        """Every option a user can set, with its default (for ``entroad data formats``)."""
        # A format's own default (folder: missing_masks keep) wins over the shared one.
        return dict(self.options) if self.prepare_options is not None else {**COMMON_OPTIONS, **self.options}

    def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        known = sorted(set(self.options) | set(COMMON_OPTIONS))
        unknown = sorted(set(given) - set(known))
        if unknown:
            hints = "".join(did_you_mean(u, known) for u in unknown)
            raise ConfigError(f"format {self.name!r}: unknown option(s) {unknown}{hints}; known: {known}")
        resolved = {**COMMON_OPTIONS, **self.options, **given}
        _check_common(self.name, resolved)
        return resolved


# Options every image format accepts (used by the shared converter).
COMMON_OPTIONS: dict[str, Any] = {
    # anomalous image without its mask: skip (drop it) | keep (image-level label, left out of
    # pixel metrics). Benchmark layouts promise masks, so a missing one means a broken copy.
    "missing_masks": "skip",
    "classes": None,  # only ingest these classes (list) - handy for huge datasets
}


def _check_common(fmt: str, options: dict[str, Any]) -> None:
    """The shared options are typed: a string ``classes`` would match substrings, and an
    unknown ``missing_masks`` would silently act as ``skip``."""
    if options["missing_masks"] not in ("skip", "keep"):
        raise ConfigError(f"format {fmt!r}: option missing_masks must be 'skip' or 'keep', got {options['missing_masks']!r}")
    classes = options["classes"]
    if classes is not None and (
        not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes)
    ):
        raise ConfigError(f"format {fmt!r}: option classes must be a list of class names, e.g. [bottle, cable], got {classes!r}")


def rel(path: Path, source: Path) -> str:
    return PurePosixPath(path.relative_to(source).as_posix()).as_posix()


def images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted (hidden files ignored)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: {path} is not a folder; check `source` in params.yaml data.datasets")
    return path


def stem_index(files: list[Path], suffixes: tuple[str, ...] = ("",)) -> dict[str, Path]:
    """``{image stem: mask path}`` for masks named ``<stem><suffix>.<ext>`` (case-insensitive suffix)."""
    out: dict[str, Path] = {}
    for f in files:
        stem = f.stem
        for suf in sorted(suffixes, key=len, reverse=True):
            if suf and stem.lower().endswith(suf.lower()):
                out.setdefault(stem[: len(stem) - len(suf)], f)
                break
        else:
            if "" in suffixes:
                out.setdefault(stem, f)
    return out


def keep_class(cls: str, options: dict[str, Any]) -> bool:
    wanted = options.get("classes")
    return not wanted or cls in wanted
