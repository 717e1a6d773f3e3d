"""Object stores and envelope encryption: bytes, keys and buckets, nothing of DICOM."""
