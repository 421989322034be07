-- 004: the feature store: feature_groups, features and feature_values.
-- Columns mirror the pandera models in e2i_synth/schemas/feature_{groups,s,_values}.py (a test
-- proves it); the CHECKs mirror their ranges, patterns and row rules. JSON columns are jsonb
-- (JSON text in polars). Rules across tables (entity references, freshness at the reference
-- date, agreement with the source rows) are asset checks, not constraints.

CREATE TABLE feature_groups (
    feature_group_id        text PRIMARY KEY CHECK (feature_group_id ~ '^FG[0-9]{3}$'),
    name                    text NOT NULL UNIQUE CHECK (name IN (
                                'hcp_demographics', 'patient_features', 'brand_performance',
                                'causal_features')),
    description             text NOT NULL,
    entity_key              text NOT NULL CHECK (entity_key IN ('hcp_id', 'patient_id', 'brand')),
    owner                   text NOT NULL CHECK (owner ~ '^[a-z][a-z0-9-]*$'),
    version                 smallint NOT NULL CHECK (version >= 1),
    created_date            date NOT NULL,
    updated_date            date NOT NULL,
    CONSTRAINT feature_groups_updated_after_created CHECK (updated_date >= created_date)
);

CREATE TABLE features (
    feature_id              text PRIMARY KEY CHECK (feature_id ~ '^FEAT[0-9]{3}$'),
    feature_group_id        text NOT NULL REFERENCES feature_groups (feature_group_id)
                                DEFERRABLE INITIALLY DEFERRED
                                CHECK (feature_group_id ~ '^FG[0-9]{3}$'),
    name                    text NOT NULL UNIQUE CHECK (name IN (
                                'specialty_encoded', 'years_experience', 'academic_flag',
                                'patient_volume_monthly', 'disease_severity', 'age_at_diagnosis',
                                'comorbidity_count', 'prior_treatment_count', 'insurance_tier',
                                'trx_30d', 'nrx_30d', 'conversion_rate', 'engagement_score',
                                'treatment_propensity', 'outcome_probability')),
    value_type              text NOT NULL CHECK (value_type IN ('float', 'int', 'bool', 'category')),
    entity_keys             text NOT NULL CHECK (entity_keys IN ('hcp_id', 'patient_id', 'brand')),
    description             text NOT NULL,
    source_table            text NOT NULL CHECK (source_table ~ '^[a-z_]+$'),
    source_columns          text NOT NULL CHECK (source_columns ~ '^[a-z_]+(, [a-z_]+)*$'),
    refresh_cadence         text NOT NULL CHECK (refresh_cadence IN ('daily', 'weekly')),
    freshness_window_hours  integer NOT NULL CHECK (freshness_window_hours > 0),
    min_value               double precision,
    max_value               double precision,
    allowed_values          jsonb CHECK (jsonb_typeof(allowed_values) = 'array'),
    created_date            date NOT NULL,
    CONSTRAINT features_window_covers_cadence CHECK (freshness_window_hours
        >= CASE refresh_cadence WHEN 'daily' THEN 24 WHEN 'weekly' THEN 168 END),
    CONSTRAINT features_range_ordered CHECK (min_value <= max_value),
    CONSTRAINT features_categories_iff_category
        CHECK ((allowed_values IS NOT NULL) = (value_type = 'category')),
    CONSTRAINT features_range_only_numeric CHECK (value_type IN ('float', 'int')
        OR (min_value IS NULL AND max_value IS NULL))
);
CREATE INDEX features_feature_group_idx ON features (feature_group_id);

-- (feature_id, entity_values, event_timestamp) is unique: one value per entity and instant.
CREATE TABLE feature_values (
    feature_value_id        text PRIMARY KEY CHECK (feature_value_id ~ '^FV-[0-9]{8}-[0-9]{5,}$'),
    feature_id              text NOT NULL REFERENCES features (feature_id)
                                DEFERRABLE INITIALLY DEFERRED
                                CHECK (feature_id ~ '^FEAT[0-9]{3}$'),
    entity_values           jsonb NOT NULL CHECK (entity_values::text
                                ~ '^\{"(hcp_id|patient_id|brand)": "[A-Za-z0-9]+"\}$'),
    value                   jsonb NOT NULL CHECK (value::text
                                ~ '^(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|true|false|"[a-z0-9_]+")$'),
    event_timestamp         timestamp with time zone NOT NULL,
    freshness_status        text NOT NULL CHECK (freshness_status IN ('fresh', 'stale', 'expired')),
    data_split              text NOT NULL CHECK (data_split IN ('train', 'validation', 'test', 'holdout')),
    CONSTRAINT feature_values_feature_entity_time_unique
        UNIQUE (feature_id, entity_values, event_timestamp),
    CONSTRAINT feature_values_id_dated_by_event CHECK (substr(feature_value_id, 4, 8)::integer
        = (extract(year FROM event_timestamp AT TIME ZONE 'UTC') * 10000
           + extract(month FROM event_timestamp AT TIME ZONE 'UTC') * 100
           + extract(day FROM event_timestamp AT TIME ZONE 'UTC'))::integer)
);
-- Daily partitions are replaced by event_timestamp window.
CREATE INDEX feature_values_event_timestamp_idx ON feature_values (event_timestamp);
