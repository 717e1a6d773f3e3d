"""The EHR front-end: FHIR ImagingStudy and HL7 v2 (ORM, ADT over MLLP).

Like ``dimse`` and ``dicomweb``, it will translate its protocols into calls on
the ``archive`` service and never touch the index or the object store itself
(ARCHITECTURE.md). The package is declared from the start so the layering is
fixed; it holds no code until the FHIR and HL7 bridge is built, after the
core milestone.
"""
