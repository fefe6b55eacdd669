"""Readers of FHIR R4 structures, one per structure, shared by every service.

Pure functions over the JSON dicts a FHIR server or a CDS client sends, returning the
twin's own frozen values; each refuses what it cannot read with an error that names the
resource and the field. ``shape`` checks the JSON shapes every reader needs (object,
array, finite number, dateTime); ``dosage`` reads Dosage and Timing (what the vancomycin
draft order and the dose history both need).
"""
