"""De-identification for DICOM ingest: salted pseudonyms and the PHI tag inventory.

Nothing from a DICOM header is ever written: processed images are bare pixels, records
carry only pseudonymous ids (HMAC-SHA256 of a UID under a site salt) and generic class
names. The salt makes ids stable across re-ingests on one site and unlinkable elsewhere.
It comes from ``$ENTROAD_DEID_SALT``, the dataset options ``salt`` / ``salt_file``, or -
when none is given - a random salt generated once into ``<data.root>/.deid_salt``
(mode 600, git-ignored). It is never written into any output.

The one exception is ``public_salt``: a fixed salt, public on purpose, that the bundled
synthetic DICOM sample (no real patients) declares in params.yaml. It wins over everything
else so that every clone writes the same bytes (and dvc.lock stays unchanged); the format
refuses it for datasets that are not generated samples.

The audit reports *which kinds* of identifying data were present and dropped (per the
groups of DICOM PS3.15 Annex E below), never a value.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from entroad.errors import DicomError

log = logging.getLogger(__name__)

SALT_ENV = "ENTROAD_DEID_SALT"
SALT_FILE = ".deid_salt"

# Keyword groups of PS3.15 Annex E's Basic Profile that our files typically carry.
PHI_GROUPS: dict[str, tuple[str, ...]] = {
    "patient_identity": (
        "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientIDsSequence",
        "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "MedicalRecordLocator",
        "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence", "EthnicGroup",
        "Occupation", "MilitaryRank", "BranchOfService", "PatientReligiousPreference",
    ),
    "patient_birth_age_size": ("PatientBirthDate", "PatientBirthTime", "PatientAge", "PatientSize", "PatientWeight"),
    "patient_contact": ("PatientAddress", "PatientTelephoneNumbers", "CountryOfResidence", "RegionOfResidence"),
    "dates_times": (
        "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime",
        "AcquisitionTime", "ContentTime", "AcquisitionDateTime", "InstanceCreationDate", "InstanceCreationTime",
    ),
    "institution_device": (
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
        "DeviceSerialNumber", "DeviceUID",
    ),
    "physicians_operators": (
        "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
        "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "OperatorsName",
        "RequestingPhysician", "ScheduledPerformingPhysicianName",
    ),
    "accession_study_ids": ("AccessionNumber", "StudyID", "RequestedProcedureID", "ScheduledProcedureStepID"),
    "uids": (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
        "MediaStorageSOPInstanceUID", "ReferencedSOPInstanceUID", "SynchronizationFrameOfReferenceUID",
    ),
    "free_text": (
        "ImageComments", "PatientComments", "StudyDescription", "SeriesDescription", "AdditionalPatientHistory",
        "RequestedProcedureDescription", "PerformedProcedureStepDescription", "AdmittingDiagnosesDescription",
        "DerivationDescription", "ProtocolName", "BodyPartExamined", "StudyComments", "ReasonForStudy",
    ),
}


def resolve_salt(options: dict[str, Any], data_root: Path) -> bytes:
    """The site salt (see module doc). Creates ``<data_root>/.deid_salt`` when nothing is set."""
    if options.get("public_salt"):
        return str(options["public_salt"]).encode()
    env = os.environ.get(SALT_ENV)
    if env:
        return env.encode()
    if options.get("salt"):
        return str(options["salt"]).encode()
    if options.get("salt_file"):
        p = Path(str(options["salt_file"])).expanduser()
        if not p.is_file():
            raise DicomError(f"salt_file {p} does not exist; create it (e.g. `openssl rand -hex 32 > {p}`)")
        return p.read_text().strip().encode()
    path = data_root / SALT_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        log.warning(
            "no de-identification salt configured: generated one into %s (mode 600, git-ignored). "
            "Keep it to get the same pseudonymous ids on re-ingest; never commit it. "
            "Set %s to share one salt between machines.", path, SALT_ENV,
        )
    return path.read_text().strip().encode()


class Pseudonymizer:
    """Stable salted ids: ``id("series", uid) -> "ser-3f9a0c1b2d4e"``."""

    PREFIX = {"study": "stu", "series": "ser", "file": "fil", "instance": "ins"}

    def __init__(self, salt: bytes):
        if not salt:
            raise DicomError("empty de-identification salt")
        self._salt = salt

    def digest(self, kind: str, value: str) -> str:
        # surrogateescape: raw file names need not be UTF-8, and must still hash (never crash)
        data = f"{kind}\0{value}".encode("utf-8", "surrogateescape")
        return hmac.new(self._salt, data, hashlib.sha256).hexdigest()

    def id(self, kind: str, value: str, n: int = 12) -> str:
        return f"{self.PREFIX.get(kind, kind[:3])}-{self.digest(kind, value)[:n]}"

    def path_key(self, rel: str) -> str:
        """Key of a raw file path in caches and audits (paths can hold patient names)."""
        return self.digest("path", rel)[:32]

    def salt_id(self) -> str:
        """Identifies *which* salt was used (so a salt change re-ingests) without revealing it."""
        return self.digest("salt-id", "entroad")[:12]


def public_options(options: dict[str, Any], salt: bytes) -> dict[str, Any]:
    """Options safe to store in dataset.json: the salt replaced by its id. ``workers`` and
    ``dask`` say where the work ran, not what it made (the output bytes are the same), so
    they stay out of dataset.json and the input fingerprint."""
    out = {k: v for k, v in options.items() if k not in ("salt", "public_salt", "workers", "dask")}
    out["salt_id"] = Pseudonymizer(salt).salt_id()
    return out


_GROUP_TAGS: dict[str, frozenset[int]] | None = None


def _group_tags() -> dict[str, frozenset[int]]:
    global _GROUP_TAGS
    if _GROUP_TAGS is None:
        from pydicom.datadict import tag_for_keyword

        _GROUP_TAGS = {g: frozenset(t for kw in kws if (t := tag_for_keyword(kw)) is not None)
                       for g, kws in PHI_GROUPS.items()}
    return _GROUP_TAGS


def phi_groups_present(ds: Any) -> set[str]:
    """Names of the PHI groups (and ``private_tags``) present in a pydicom dataset."""
    tags = {int(t) for t in ds.keys()}  # top level; set lookups instead of keyword parsing
    found = {g for g, group in _group_tags().items() if tags & group}
    if any(t >> 16 & 1 for t in tags):  # odd group number = private
        found.add("private_tags")
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        found.add("uids")
    return found
