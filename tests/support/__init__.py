"""What the tests share: signing keys and JWTs (`keys`), FHIR R4 resource builders
(`fhir`) and the vancomycin patient of the dosing tests (`vancomycin`)."""
