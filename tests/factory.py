"""Synthetic DICOM instances made with pydicom, for tests that need control."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

UID_ROOT = "1.2.826.0.1.3680043.10.1393."


def new_uid() -> str:
    """A fresh UID under a test root."""
    return str(generate_uid(prefix=UID_ROOT))


def make_ct(
    *,
    study: str | None = None,
    series: str | None = None,
    sop: str | None = None,
    frames: int = 1,
    rows: int = 8,
    columns: int = 8,
    **attributes: Any,
) -> Dataset:
    """A small CT Image with 16-bit native pixels; attributes override defaults."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop or new_uid()
    ds.StudyInstanceUID = study or new_uid()
    ds.SeriesInstanceUID = series or new_uid()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TEST-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20210115"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-1"
    ds.StudyID = "S1"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    pixels = np.arange(frames * rows * columns, dtype="<u2")
    ds.PixelData = pixels.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def part10(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Encode a data set as a Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    # A data set may lack its SOP Instance UID on purpose; the meta still has one.
    # (Several values, when a test asks for them, are copied as they are.)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or UID(new_uid())
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
