-- 009: feature_values.entity_values names the keys an analyst joins on: an HCP feature its
-- hcp_id; a brand feature (kept per HCP) its brand and hcp_id; a patient feature the patient's
-- brand, hcp_id and patient_id (jsonb renders keys shortest first). Rows of the former one-key
-- form are derived data of an older generator: they are removed, and the next feature_values
-- load rebuilds them.

ALTER TABLE feature_values DROP CONSTRAINT feature_values_entity_values_check;
DELETE FROM feature_values
WHERE entity_values::text !~ '^\{("hcp_id": "[A-Za-z0-9]+"|"brand": "[A-Za-z0-9]+", "hcp_id": "[A-Za-z0-9]+"|"brand": "[A-Za-z0-9]+", "hcp_id": "[A-Za-z0-9]+", "patient_id": "[A-Za-z0-9]+")\}$';
ALTER TABLE feature_values ADD CONSTRAINT feature_values_entity_values_check CHECK (
    entity_values::text ~ '^\{("hcp_id": "[A-Za-z0-9]+"|"brand": "[A-Za-z0-9]+", "hcp_id": "[A-Za-z0-9]+"|"brand": "[A-Za-z0-9]+", "hcp_id": "[A-Za-z0-9]+", "patient_id": "[A-Za-z0-9]+")\}$'
);
