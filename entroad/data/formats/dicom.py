"""Format ``dicom``: a folder of DICOM files (+ labels.csv, PNG/NIfTI masks), de-identified.

It converts on its own (:mod:`entroad.data.dicom`) instead of through the shared image
converter, and its options hold the de-identification salt: dataset.json and the input
fingerprint record only the salt's id, and raw paths (which can carry patient names) reach
the fingerprint cache only as salted keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.dicom import deid
from entroad.data.dicom.ingest import ingest_dicom
from entroad.data.dicom.options import DICOM_DOMAIN, DICOM_FORMAT, DicomOptions, resolve_dicom_options
from entroad.data.formats.base import ImageFormat, Prepared, Skip
from entroad.data.manifest import Record
from entroad.errors import ConfigError


def prepare(given: dict[str, Any], data_root: Path, generated: bool) -> Prepared:
    options = resolve_dicom_options(given)
    if options.get("public_salt") and not generated:
        raise ConfigError(
            "format 'dicom': public_salt is only for bundled synthetic samples (datasets with a "
            "`generate` recipe); real data needs a secret salt ($ENTROAD_DEID_SALT, salt_file, or the "
            "generated <data.root>/.deid_salt), so remove public_salt"
        )
    salt = deid.resolve_salt(options, data_root)
    return Prepared(options, deid.public_options(options, salt), deid.Pseudonymizer(salt).path_key, salt)


def convert(source: Path, out_dir: Path, prep: Prepared, bar: Any) -> tuple[list[Record], list[Skip], dict[str, Any]]:
    return ingest_dicom(source, out_dir, prep.options, prep.secret, bar)


FORMAT = ImageFormat(
    name=DICOM_FORMAT,
    domain=DICOM_DOMAIN,
    options=DicomOptions().model_dump(exclude={"public_salt"}),
    description="folder of DICOM files (+ labels.csv, PNG/NIfTI masks)",
    convert=convert,
    prepare_options=prepare,
)
