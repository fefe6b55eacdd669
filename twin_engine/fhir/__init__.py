"""The one FHIR R4 reader, shared by every service (the twin and vancomycin dosing alike).

Pure functions over the JSON dicts a FHIR server or a CDS client sends, returning the
twin's own frozen values; what cannot be read is refused with a reason naming the
resource and the element, never dropped silently.

- ``entries``: a payload (Bundle, resource, list) split into entries; references; issues.
- ``records``: Patient, Observation (LOINC codes, UCUM units), Condition, Procedure.
- ``medications``: MedicationRequest/Statement/Administration and the medication they name.
- ``dosage``: Dosage and Timing; ``doses``: vancomycin doses, orders, levels, covariates.
- ``read``: ``ingest``, the twin's entry point.
- The checks: ``shape`` (JSON shapes), ``elements`` (the reader's own grammar of the
  elements the twin reads), ``valuesets`` (required R4 codes), ``validate``
  (fhir.resources, only for what the reader's grammar cannot vouch for); ``memo``.
- Units: ``twin_engine.units`` holds the one rule (UCUM codes, explicit printed spellings).
"""
