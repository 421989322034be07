-- 008: a feature is keyed by its group's entity key, said once as a constraint (it was an
-- asset check scanning features): a composite foreign key onto (feature_group_id, entity_key),
-- which needs that pair to be unique in feature_groups (it is: feature_group_id is the key).

ALTER TABLE feature_groups
    ADD CONSTRAINT feature_groups_id_entity_key_unique UNIQUE (feature_group_id, entity_key);
ALTER TABLE features
    ADD CONSTRAINT features_entity_key_of_group FOREIGN KEY (feature_group_id, entity_keys)
        REFERENCES feature_groups (feature_group_id, entity_key) DEFERRABLE INITIALLY DEFERRED;
