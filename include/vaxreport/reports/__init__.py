"""Reports people act on: rejected records per caregiver and care unit."""
