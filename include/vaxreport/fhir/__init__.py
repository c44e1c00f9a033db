"""FHIR R4 batch Bundles for the register, as plain dicts serialised once."""
