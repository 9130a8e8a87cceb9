"""A synthetic DICOM study for the bundled sample and the tests (pydicom + nibabel only).

One (fake) patient with two studies, written exactly like a PACS export would be:

::

    <root>/DOE_JANE_PID-7734-SECRET/CT_HEAD_NORMAL/IM0001.dcm ...  CT, 12-bit, HU via rescale
    <root>/DOE_JANE_PID-7734-SECRET/CT_HEAD_BLEED/IM0001.dcm ...   CT with a hyperdense bleed
    <root>/DOE_JANE_PID-7734-SECRET/MR_T1_MULTIFRAME.dcm           Enhanced MR, multi-frame, RLE
    <root>/DOE_JANE_PID-7734-SECRET/MR_T2_TUMOR/IM0001.dcm ...     MR with a hyperintense tumour
    <root>/masks/ct_head_bleed.nii.gz      NIfTI volume mask (dcm2niix-style orientation)
    <root>/masks/mr_t2_IM0006.png ...      PNG slice masks
    <root>/labels.csv                      path,label,mask,anomaly_type
    <root>/README.txt                      a non-DICOM file (skipped and reported)

Every identifying tag of the de-identification inventory (:data:`entroad.data.dicom.deid.PHI_GROUPS`,
after PS3.15 Annex E) is filled: :data:`PLANTED_PHI` plus a distinctive value per remaining
keyword, identifying values inside standard sequences, a private tag and a private sequence;
the patient's name is also the folder name. :func:`planted_needles` lists them so tests can
grep every output for them. File
names are in an order different from the slice order, to exercise sorting. Output bytes
depend only on the arguments.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from entroad.data.dicom.deid import PHI_GROUPS

PATIENT_DIR = "DOE_JANE_PID-7734-SECRET"

PLANTED_PHI: dict[str, str] = {
    "PatientName": "DOE^JANE^QUINTESSA",
    "PatientID": "PID-7734-SECRET",
    "PatientBirthDate": "19610704",
    "PatientAddress": "42 Hidden Lane Springfield",
    "PatientTelephoneNumbers": "555-0199-777",
    "OtherPatientIDs": "OTHERID-99812",
    "InstitutionName": "Saint Nowhere General Hospital",
    "InstitutionAddress": "1 Secret Plaza Shelbyville",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "QUINN^MICHAELA",
    "OperatorsName": "TECH^TERRENCE",
    "AccessionNumber": "ACC20240917X",
    "StudyID": "STUDYSECRET7",
    "StationName": "CTSTATIONSECRET",
    "DeviceSerialNumber": "SN99SECRET",
    "ImageComments": "Jane Doe bed twelve called her daughter Zelda",
    "StudyDescription": "HEAD CT JANE DOE EMERGENCY",
    "PatientComments": "allergic to penicillin per Zelda",
    "AdditionalPatientHistory": "fell at 42 Hidden Lane",
    "StudyDate": "20240917",
    "SeriesDate": "20240917",
    "AcquisitionDate": "20240917",
    "ContentDate": "20240917",
}
PRIVATE_CREATOR = "SECRETVENDOR"
PRIVATE_VALUE = "PRIVATE-PHI-ZEBRA-0042"
PRIVATE_SEQ_VALUE = "PRIVSEQ-PHI-OKAPI-7"
# Identifying values inside standard sequences (nested items leak as easily as top-level tags).
NESTED_PHI: dict[str, str] = {
    "OtherPatientIDsSequence": "NESTEDPID-4471",
    "ReferencedStudySequence": "1.2.826.0.1.3680043.8.498.777001",  # a referenced SOP instance UID
    "RequestAttributesSequence": "REQPROC-ID-5521",
}


def _phi_value(i: int, kw: str, vr: str) -> object | None:
    """A distinctive, deterministic value of VR ``vr`` for the ``i``-th identifying keyword."""
    from pydicom.uid import generate_uid

    if vr == "PN":
        return f"PHIPN{i:02d}^{kw[:10].upper()}"
    if vr in ("LO", "LT", "ST", "UT", "SH", "UC"):
        return f"PHI{i:02d}{kw[:9]}" if vr == "SH" else f"PHI{i:02d}-{kw}-VALUE"
    if vr == "CS":
        return f"PHICS{i:02d}X"
    if vr == "DA":
        return f"19{10 + i:02d}0311"
    if vr == "TM":
        return f"1{i % 10}1718.{i:03d}917"
    if vr == "DT":
        return f"19{10 + i:02d}0311101718.{i:03d}"
    if vr == "AS":
        return "093Y"
    if vr == "DS":
        return f"{1 + i / 1000:.6f}1"
    if vr == "UI":
        return generate_uid(entropy_srcs=["planted", kw])
    return None


def planted_tags() -> dict[str, object]:
    """{keyword: value} of every identifying keyword of the de-identification inventory
    (:data:`entroad.data.dicom.deid.PHI_GROUPS`) that :func:`_base` fills in, sequences excluded."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    out: dict[str, object] = {}
    i = 0
    for kws in PHI_GROUPS.values():
        for kw in kws:
            if kw in PLANTED_PHI or kw in out or tag_for_keyword(kw) is None:
                continue
            i += 1
            if (kw.endswith("InstanceUID") and kw != "ReferencedSOPInstanceUID") or kw == "FrameOfReferenceUID":
                continue  # real UIDs of the file (set per file)
            value = _phi_value(i, kw, dictionary_VR(kw))
            if value is not None:
                out[kw] = value
    return out


def planted_needles(min_len: int = 6) -> set[str]:
    """Every identifying string the generator plants (file UIDs excluded: read them from the
    files), in the forms a leak could take (``DOE^JANE`` and ``DOE JANE``)."""
    values = [*PLANTED_PHI.values(), *planted_tags().values(), *NESTED_PHI.values(), PRIVATE_VALUE,
              PRIVATE_SEQ_VALUE, PATIENT_DIR]
    out: set[str] = set()
    for v in map(str, values):
        for form in (v, v.replace("^", " ")):
            if len(form) >= min_len:
                out.add(form)
    return out


def _plant(ds) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    for kw, value in PLANTED_PHI.items():
        setattr(ds, kw, value)
    for kw, value in planted_tags().items():
        if kw not in ds:
            setattr(ds, kw, value)
    for kw in ("PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence"):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "PHICODE", "99PHI"
        code.CodeMeaning = f"PHI code meaning {kw}"
        setattr(ds, kw, Sequence([code]))
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = NESTED_PHI["OtherPatientIDsSequence"], "PHI-ISSUER-SEQ"
    ds.OtherPatientIDsSequence = Sequence([other])
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = NESTED_PHI["ReferencedStudySequence"]
    ds.ReferencedStudySequence = Sequence([ref])
    req = Dataset()
    req.RequestedProcedureID = NESTED_PHI["RequestAttributesSequence"]
    ds.RequestAttributesSequence = Sequence([req])
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    inner = Dataset()
    inner.add_new(0x00110010, "LO", PRIVATE_CREATOR)
    inner.add_new(0x00111002, "LO", PRIVATE_SEQ_VALUE)
    block.add_new(0x02, "SQ", Sequence([inner]))


def _uid(seed: int, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(seed), *map(str, parts)])


def _base(modality: str, sop_class: str, sop_uid: str, study_uid: str, series_uid: str, phi: bool = True):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = _uid(0, study_uid, "frame-of-reference")
    ds.Modality = modality
    if phi:
        _plant(ds)
    return ds


def _pixels(ds, arr: np.ndarray, bits_stored: int = 12) -> None:
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(arr.astype(np.uint16)).tobytes()


def head_phantom(size: int, n: int, k: int, rng: np.random.Generator, mr: bool = False) -> np.ndarray:
    """Axial slice ``k`` of ``n`` of a head: HU (CT) or arbitrary MR-like intensities."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    z = (k + 0.5) / n * 1.6 - 0.8  # -0.8..0.8 through the head
    scale = np.sqrt(max(1 - z * z, 0.05))
    r = np.sqrt(((x - size / 2) / (0.42 * size * scale)) ** 2 + ((y - size / 2) / (0.48 * size * scale)) ** 2)
    vent = np.sqrt(((np.abs(x - size / 2) - 0.08 * size) / (0.05 * size)) ** 2 + ((y - size / 2) / (0.14 * size)) ** 2)
    air, bone, brain, csf = (-1000.0, 1000.0, 35.0, 8.0) if not mr else (0.0, 150.0, 600.0, 1500.0)
    img = np.full((size, size), air, np.float32)
    img[r < 1.0] = bone
    img[r < 0.9] = brain
    if abs(z) < 0.5:
        img[(vent < 1.0) & (r < 0.9)] = csf
    noise = 4.0 if not mr else 25.0
    return img + (r < 0.9) * rng.normal(0, noise, img.shape).astype(np.float32)


def lesion_mask(size: int, n: int, k: int, centre: tuple[float, float, float], radius: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy, cz = centre
    d = ((x - cx * size) / (radius * size)) ** 2 + ((y - cy * size) / (radius * size * 0.8)) ** 2
    d = d + ((k - cz * n) / max(n * 0.15, 1.0)) ** 2
    return d < 1.0


def _geometry(ds, k: int, size: int, spacing: float, thickness: float) -> None:
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-size * spacing / 2, -size * spacing / 2, k * thickness]
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = thickness


def _save(ds, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _file_order(n: int) -> list[int]:
    """File number of each slice: interleaved, so name order != slice order."""
    return [(k * 7) % n for k in range(n)] if n % 7 else list(reversed(range(n)))


def write_ct_series(
    folder: Path, seed: int, size: int, n: int, study_uid: str, lesion: bool, hu_bleed: float = 75.0
) -> np.ndarray:
    """Single-frame CT series; returns the lesion mask volume (slices, rows, cols)."""
    from pydicom.uid import CTImageStorage

    rng = np.random.default_rng([seed, 1 if lesion else 0])
    series_uid = _uid(seed, folder.name)
    masks = np.zeros((n, size, size), bool)
    order = _file_order(n)
    for k in range(n):
        hu = head_phantom(size, n, k, rng)
        if lesion:
            m = lesion_mask(size, n, k, (0.62, 0.42, 0.5), 0.11) & (hu > 0) & (hu < 100)
            hu[m] = hu_bleed + rng.normal(0, 4, int(m.sum()))
            masks[k] = m
        ds = _base("CT", CTImageStorage, _uid(seed, folder.name, k), study_uid, series_uid)
        ds.InstanceNumber = k + 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
        _geometry(ds, k, size, 1.8, 5.0)
        _pixels(ds, np.clip(hu + 1024, 0, 4095))
        _save(ds, folder / f"IM{order[k] + 1:04d}.dcm")
    return masks


def write_mr_series(folder: Path, seed: int, size: int, n: int, study_uid: str) -> dict[int, np.ndarray]:
    """Single-frame T2-like MR series with a hyperintense tumour; returns {file number: mask}."""
    from pydicom.uid import MRImageStorage

    rng = np.random.default_rng([seed, 7])
    series_uid = _uid(seed, folder.name)
    out: dict[int, np.ndarray] = {}
    for k in range(n):
        img = head_phantom(size, n, k, rng, mr=True)
        m = lesion_mask(size, n, k, (0.38, 0.58, 0.45), 0.13) & (img > 300) & (img < 1000)
        img[m] = 1150 + rng.normal(0, 30, int(m.sum()))
        ds = _base("MR", MRImageStorage, _uid(seed, folder.name, k), study_uid, series_uid)
        ds.InstanceNumber = k + 1
        _geometry(ds, k, size, 1.8, 5.0)
        _pixels(ds, np.clip(img, 0, 4095))
        _save(ds, folder / f"IM{k + 1:04d}.dcm")
        if m.any():
            out[k + 1] = m
    return out


def write_mr_multiframe(path: Path, seed: int, size: int, frames: int, study_uid: str, rle: bool = True) -> None:
    """Enhanced MR multi-frame file (per-frame positions in functional groups), RLE-compressed."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, RLELossless

    rng = np.random.default_rng([seed, 11])
    vol = np.stack([head_phantom(size, frames, k, rng, mr=True) * 0.7 + 100 for k in range(frames)])
    ds = _base("MR", EnhancedMRImageStorage, _uid(seed, path.name), study_uid, _uid(seed, path.name, "series"))
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [1.8, 1.8], 4.0
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = Sequence([orient]), Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for k in range(frames):
        f, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [-size * 0.9, -size * 0.9, k * 4.0]
        f.PlanePositionSequence = Sequence([pos])
        per.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    _pixels(ds, np.clip(vol, 0, 4095))
    if rle:
        ds.compress(RLELossless, generate_instance_uid=False)  # keep the seeded UID: same bytes every run
    _save(ds, path)


def nifti_bytes(mask: np.ndarray, size: int, spacing: float, thickness: float, flip_rows: bool = True) -> bytes:
    """Gzipped NIfTI of a (slices, rows, cols) mask on the CT series grid (RAS affine).

    ``flip_rows`` stores rows bottom-up like dcm2niix does, so readers must use the affine.
    """
    import nibabel as nib

    lps = np.eye(4)
    lps[:3, 0] = [spacing, 0, 0]
    lps[:3, 1] = [0, spacing, 0]
    lps[:3, 2] = [0, 0, thickness]
    lps[:3, 3] = [-size * spacing / 2, -size * spacing / 2, 0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    data = np.transpose(mask.astype(np.uint8), (2, 1, 0))  # (col, row, slice)
    if flip_rows:
        data = data[:, ::-1, :]
        flip = np.eye(4)
        flip[1, 1], flip[1, 3] = -1, data.shape[1] - 1
        affine = affine @ flip
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), mtime=0)


def write_dicom_study(root: Path, seed: int = 0, size: int = 128, ct_slices: int = 20, mr_slices: int = 16,
                      mf_frames: int = 12) -> int:
    """Write the whole study (see module doc) under ``root``; returns the number of slices."""
    root = Path(root)
    pat = root / PATIENT_DIR
    ct_study, mr_study = _uid(seed, "study-ct"), _uid(seed, "study-mr")
    write_ct_series(pat / "CT_HEAD_NORMAL", seed, size, ct_slices, ct_study, lesion=False)
    bleed = write_ct_series(pat / "CT_HEAD_BLEED", seed, size, ct_slices, ct_study, lesion=True)
    write_mr_multiframe(pat / "MR_T1_MULTIFRAME.dcm", seed, size, mf_frames, mr_study)
    tumour = write_mr_series(pat / "MR_T2_TUMOR", seed, size, mr_slices, mr_study)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "masks" / "ct_head_bleed.nii.gz").write_bytes(nifti_bytes(bleed, size, 1.8, 5.0))
    rows = [
        "path,label,mask,anomaly_type",
        f"{PATIENT_DIR}/CT_HEAD_NORMAL,0,,",
        f"{PATIENT_DIR}/CT_HEAD_BLEED,1,masks/ct_head_bleed.nii.gz,hemorrhage",
        f"{PATIENT_DIR}/MR_T1_MULTIFRAME.dcm,0,,",
        f"{PATIENT_DIR}/MR_T2_TUMOR,0,,",
    ]
    for num, m in sorted(tumour.items()):
        name = f"mr_t2_IM{num:04d}.png"
        Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / name)
        rows.append(f"{PATIENT_DIR}/MR_T2_TUMOR/IM{num:04d}.dcm,1,masks/{name},tumor")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "README.txt").write_text(
        "Synthetic DICOM study generated by entroad (fake patient data for testing de-identification).\n"
    )
    return 2 * ct_slices + mr_slices + mf_frames


def write_dicom_image(path: Path, pixels: np.ndarray, modality: str = "CT", seed: int = 0, phi: bool = True,
                      **attrs: object) -> Path:
    """One single-frame image (uint16 stored values) with PHI tags; ``attrs`` set extra tags."""
    from pydicom.uid import CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage

    sop = {"CT": CTImageStorage, "MR": MRImageStorage}.get(modality, SecondaryCaptureImageStorage)
    key = str(path)
    ds = _base(modality, sop, _uid(seed, key, "sop"), _uid(seed, key, "study"), _uid(seed, key, "series"), phi)
    _pixels(ds, pixels, bits_stored=16)
    for k, v in attrs.items():
        setattr(ds, k, v)
    _save(ds, path)
    return path
