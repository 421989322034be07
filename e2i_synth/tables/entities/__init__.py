"""Who exists: hcp_profiles and patient_journeys (model, pure generator, assets, checks)."""
