"""Part 10 files from received C-STORE data sets, without re-encoding them."""

from __future__ import annotations

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

# A UUID-derived UID (PS3.5 B.2) naming this implementation (PS3.7 D.3.3.2).
IMPLEMENTATION_CLASS_UID = "2.25.117646094472016945822983730394404847552"
IMPLEMENTATION_VERSION_NAME = "DICOMVAULT_01"
_PREAMBLE = b"\x00" * 128 + b"DICM"


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str
) -> FileMetaDataset:
    """File Meta Information for a received instance (PS3.10 7.1).

    The same instance sent again, by any caller, gets the same bytes, so that
    ingest recognises the repeat (no Source Application Entity Title).
    """
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def part10_header(meta: FileMetaDataset) -> bytes:
    """Preamble, prefix and meta group: what goes before the data set."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    buffer.write(_PREAMBLE)
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()
