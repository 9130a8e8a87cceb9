"""DICOM: scan (headers, volumes), pixels (decode, windows, LUTs, sizing), labels, masks,
de-identification, options and the ingest that ties them together.

The registry entry is :mod:`entroad.data.formats.dicom`; site prediction reuses
:func:`entroad.data.dicom.ingest.ingest_dicom`.
"""
