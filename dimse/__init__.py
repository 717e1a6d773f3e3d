"""DIMSE front-end: pynetdicom onto the Archive service (PS3.4, PS3.7, PS3.8)."""
