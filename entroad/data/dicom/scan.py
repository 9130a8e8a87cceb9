"""DICOM header pass: which files are images, how they group into volumes, slice order.

The ingest reads each file once (:func:`read_dataset`, pixels deferred until a slice is
rendered) and takes its header from that dataset; :func:`read_header` reads a header alone.
A *volume* is either the single-frame files of one series with the same image size and
orientation (a CT/MR stack, sorted along the slice normal, else by InstanceNumber), or one
multi-frame file. UIDs stay in memory only; what leaves this module is pseudonymous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entroad.data.dicom.deid import phi_groups_present


@dataclass(frozen=True)
class Header:
    rel: str
    modality: str
    rows: int
    cols: int
    frames: int
    samples: int  # samples per pixel (3 = colour)
    photometric: str
    study_uid: str
    series_uid: str
    sop_uid: str
    instance: int | None
    ipp: tuple[tuple[float, float, float], ...]  # one per frame (empty if unknown)
    iop: tuple[float, ...] | None
    spacing: tuple[float, float] | None  # (row spacing, column spacing)
    transfer_syntax: str
    burned_in: bool
    phi: frozenset[str]


@dataclass
class Volume:
    key: str  # pseudonymous series id (one per volume)
    study: str  # pseudonymous study id
    modality: str
    files: list[Header]
    multiframe: bool
    slices: list[tuple[str, int | None]] = field(default_factory=list)  # (rel, frame) in order

    @property
    def shape(self) -> tuple[int, int]:
        return self.files[0].rows, self.files[0].cols


# Defined terms of Modality (PS3.3 C.7.3.1.1.1). Modality becomes a class name and an audit
# count, so a value outside this list (free text a site typed in) is written as "OT".
MODALITIES = frozenset(
    "AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS KER KO "
    "LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT PX REG RESP RF RG RTDOSE "
    "RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US "
    "VA XA XAPROTOCOL XC".split()
)


def safe_modality(value: object) -> str:
    m = str(value or "").strip().upper()
    return m if m in MODALITIES else "OT"


class NotAnImage(Exception):
    """A readable DICOM file without image pixels, or a file that is not DICOM at all."""


def _floats(v: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _geometry(ds: Any, frames: int) -> tuple[tuple[tuple[float, float, float], ...], Any, Any]:
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    positions: tuple[tuple[float, float, float], ...] = (ipp,) if ipp and frames == 1 else ()
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if shared:  # enhanced multi-frame: geometry lives in functional groups
        g = shared[0]
        if iop is None and "PlaneOrientationSequence" in g:
            iop = _floats(g.PlaneOrientationSequence[0].get("ImageOrientationPatient"), 6)
        if spacing is None and "PixelMeasuresSequence" in g:
            spacing = _floats(g.PixelMeasuresSequence[0].get("PixelSpacing"), 2)
    if per_frame and len(per_frame) == frames:
        pos = [
            _floats(f.PlanePositionSequence[0].get("ImagePositionPatient"), 3) if "PlanePositionSequence" in f else None
            for f in per_frame
        ]
        if all(pos):
            positions = tuple(pos)  # type: ignore[arg-type]
    return positions, iop, spacing


def read_dataset(path: Path, defer_size: int | None = None) -> Any:
    """Parse one file; ``defer_size``: larger values (pixels) are read only when accessed.

    Raises NotAnImage with a PHI-free reason when the file is not DICOM or its header is
    unreadable. A file whose header parses but whose pixel data is cut short is returned
    without its pixels, so that the pixel step reports it as a decode failure.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, defer_size=defer_size)
    except InvalidDicomError:
        raise NotAnImage("not a DICOM file") from None
    except Exception:
        pass
    try:  # truncated pixel data, or a bad header
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise NotAnImage("not a DICOM file") from None
    except Exception as e:  # truncated header, bad VR...
        raise NotAnImage(f"unreadable DICOM header ({type(e).__name__})") from None
    ds.PixelData = b""  # the pixels did not parse: the decode step reports the file
    return ds


def read_header(path: Path, rel: str) -> Header:
    """Parse one file's header (no pixels). Raises NotAnImage with a PHI-free reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise NotAnImage("not a DICOM file") from None
    except Exception as e:  # truncated header, bad VR...
        raise NotAnImage(f"unreadable DICOM header ({type(e).__name__})") from None
    return header_from_dataset(ds, rel)


def header_from_dataset(ds: Any, rel: str) -> Header:
    """The :class:`Header` of a parsed dataset (the same object the pixels are decoded from)."""
    if "Rows" not in ds or "Columns" not in ds:
        raise NotAnImage("DICOM without image pixels (e.g. report, plan, DICOMDIR)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    positions, iop, spacing = _geometry(ds, frames)
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    inst = ds.get("InstanceNumber")
    try:
        instance = int(inst) if inst not in (None, "") else None
    except (TypeError, ValueError):
        instance = None
    return Header(
        rel=rel,
        modality=safe_modality(ds.get("Modality")),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        frames=frames,
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=str(ds.get("SOPInstanceUID", "") or (ds.file_meta.get("MediaStorageSOPInstanceUID", "") if hasattr(ds, "file_meta") else "")),
        instance=instance,
        ipp=positions,
        iop=iop,
        spacing=spacing,
        transfer_syntax=getattr(ts, "name", str(ts or "unknown")),
        burned_in=str(ds.get("BurnedInAnnotation", "")).upper() == "YES",
        phi=frozenset(phi_groups_present(ds)),
    )


def _normal(iop: tuple[float, ...]) -> np.ndarray:
    # written out: np.cross costs ~0.4 ms a call on 3-vectors, once per slice
    (a1, a2, a3), (b1, b2, b3) = iop[:3], iop[3:6]
    return np.array([a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1])


def sort_slices(files: list[Header]) -> list[Header]:
    """Along the slice normal when every file has position + orientation, else by number."""
    if all(h.ipp and h.iop for h in files):
        n = _normal(files[0].iop)  # type: ignore[arg-type]
        return sorted(files, key=lambda h: (float(np.dot(n, h.ipp[0])), h.instance or 0, h.rel))
    if all(h.instance is not None for h in files):
        return sorted(files, key=lambda h: (h.instance, h.rel))
    return sorted(files, key=lambda h: h.rel)


def group_volumes(headers: list[Header], pid: Any) -> list[Volume]:
    """Group headers into volumes; ``pid`` is a :class:`~entroad.data.dicom.deid.Pseudonymizer`."""
    stacks: dict[tuple[Any, ...], list[Header]] = {}
    volumes: list[Volume] = []
    for h in headers:
        if h.frames > 1:
            key = pid.id("series", f"{h.series_uid}|{h.sop_uid}")
            vol = Volume(key, pid.id("study", h.study_uid), h.modality, [h], True)
            vol.slices = [(h.rel, f) for f in range(h.frames)]
            volumes.append(vol)
        else:
            series = h.series_uid or str(Path(h.rel).parent)
            iop = tuple(round(v, 3) for v in h.iop) if h.iop else None
            stacks.setdefault((h.study_uid, series, h.rows, h.cols, h.samples, iop), []).append(h)
    for (study, series, rows, cols, samples, iop), files in stacks.items():
        key = pid.id("series", f"{series}|{rows}x{cols}x{samples}|{iop}")
        ordered = sort_slices(files)
        vol = Volume(key, pid.id("study", study), ordered[0].modality, ordered, False)
        vol.slices = [(h.rel, None) for h in ordered]
        volumes.append(vol)
    return sorted(volumes, key=lambda v: (v.modality, v.study, v.key))


def volume_affine(vol: Volume) -> np.ndarray | None:
    """4x4 LPS affine of voxel (column, row, slice) -> patient mm, when geometry is known."""
    h0 = vol.files[0]
    positions = list(h0.ipp) if vol.multiframe else [h.ipp[0] for h in vol.files if h.ipp]
    if h0.iop is None or h0.spacing is None or len(positions) != len(vol.slices):
        return None
    x, y = np.asarray(h0.iop[:3]), np.asarray(h0.iop[3:])
    row_sp, col_sp = h0.spacing
    a = np.eye(4)
    a[:3, 0] = x * col_sp
    a[:3, 1] = y * row_sp
    p0 = np.asarray(positions[0])
    a[:3, 2] = (np.asarray(positions[-1]) - p0) / (len(positions) - 1) if len(positions) > 1 else np.cross(x, y)
    a[:3, 3] = p0
    return a


def select_slices(n: int, how: str) -> list[int]:
    """``all`` | ``middle`` | ``every:K`` | ``range:A:B`` (B exclusive) -> slice indices."""
    how = str(how).strip().lower()
    if how == "all":
        return list(range(n))
    if how == "middle":
        return [n // 2] if n else []
    if how.startswith("every:"):
        return list(range(0, n, int(how.split(":", 1)[1])))
    if how.startswith("range:"):
        a, b = how.split(":")[1:3]
        return list(range(max(0, int(a)), min(n, int(b))))
    raise ValueError(f"slices: unknown selection {how!r}; use all | middle | every:K | range:A:B")
