"""DICOMweb front-end: QIDO-RS, WADO-RS and STOW-RS over Starlette (PS3.18)."""
