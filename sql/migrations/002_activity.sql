-- 002: activity tables: treatment_events (claims-like events per patient), ml_predictions
-- (model scores) and triggers (agent alerts for HCPs, with their lifecycle).
-- Column lists and types mirror the pandera models in e2i_synth/schemas; CHECKs mirror their
-- ranges, enumerations and row rules. Foreign keys are DEFERRABLE INITIALLY DEFERRED, as in 001.
-- ml_predictions and triggers will be loaded by daily windows of their timestamp (indexed).

CREATE TABLE treatment_events (
    event_id                text PRIMARY KEY CHECK (event_id ~ '^EVT[0-9]{8}$'),
    patient_id              text NOT NULL REFERENCES patient_journeys (patient_id)
                                DEFERRABLE INITIALLY DEFERRED,
    hcp_id                  text NOT NULL REFERENCES hcp_profiles (hcp_id)
                                DEFERRABLE INITIALLY DEFERRED,
    brand                   text NOT NULL CHECK (brand IN ('Remibrutinib', 'Fabhalta', 'Kisqali')),
    event_type              text NOT NULL CHECK (event_type IN (
                                'diagnosis', 'lab_test', 'office_visit', 'prescription',
                                'refill', 'switch', 'discontinuation', 'hospitalization')),
    event_date              date NOT NULL,
    days_from_diagnosis     integer NOT NULL CHECK (days_from_diagnosis >= 0),
    claim_type              text NOT NULL CHECK (claim_type IN ('medical', 'pharmacy', 'derived')),
    icd10_code              text NOT NULL CHECK (icd10_code ~ '^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$'),
    procedure_code          text CHECK (procedure_code ~ '^[0-9]{5}$'),
    product_name            text,
    ndc_code                text CHECK (ndc_code ~ '^[0-9]{5}-[0-9]{4}-[0-9]{2}$'),
    quantity                integer CHECK (quantity >= 1),
    days_supply             smallint CHECK (days_supply BETWEEN 1 AND 90),
    cost_usd                double precision NOT NULL CHECK (cost_usd >= 0),
    insurance_type          text NOT NULL CHECK (insurance_type IN (
                                'commercial', 'medicare', 'medicaid', 'uninsured')),
    data_split              text NOT NULL CHECK (data_split IN ('train', 'validation', 'test', 'holdout')),
    CONSTRAINT treatment_events_one_per_day_and_type UNIQUE (patient_id, event_date, event_type),
    CONSTRAINT treatment_events_claim_type_of_event CHECK (claim_type = CASE
        WHEN event_type IN ('diagnosis', 'lab_test', 'office_visit', 'hospitalization') THEN 'medical'
        WHEN event_type IN ('prescription', 'refill', 'switch') THEN 'pharmacy'
        ELSE 'derived' END),
    CONSTRAINT treatment_events_procedure_iff_medical CHECK ((procedure_code IS NOT NULL)
        = (event_type IN ('diagnosis', 'lab_test', 'office_visit', 'hospitalization'))),
    CONSTRAINT treatment_events_product_iff_treatment CHECK ((product_name IS NOT NULL)
        = (event_type IN ('prescription', 'refill', 'switch', 'discontinuation'))),
    CONSTRAINT treatment_events_dispensing_iff_pharmacy CHECK (
        (ndc_code IS NOT NULL) = (event_type IN ('prescription', 'refill', 'switch'))
        AND (quantity IS NOT NULL) = (event_type IN ('prescription', 'refill', 'switch'))
        AND (days_supply IS NOT NULL) = (event_type IN ('prescription', 'refill', 'switch')))
);
CREATE INDEX treatment_events_hcp_idx ON treatment_events (hcp_id);
CREATE INDEX treatment_events_type_date_idx ON treatment_events (event_type, event_date);

CREATE TABLE ml_predictions (
    prediction_id           text PRIMARY KEY CHECK (prediction_id ~ '^PRD-[0-9]{8}-[0-9]{6}$'),
    model_name              text NOT NULL CHECK (model_name IN (
                                'propensity_xgb', 'churn_gbm', 'nba_contextual_bandit')),
    model_version           text NOT NULL CHECK (model_version ~ '^[0-9]+\.[0-9]+\.[0-9]+$'),
    prediction_type         text NOT NULL CHECK (prediction_type IN (
                                'treatment_propensity', 'churn_risk', 'next_best_action')),
    entity_type             text NOT NULL CHECK (entity_type IN ('patient', 'hcp')),
    patient_id              text REFERENCES patient_journeys (patient_id)
                                DEFERRABLE INITIALLY DEFERRED,
    hcp_id                  text NOT NULL REFERENCES hcp_profiles (hcp_id)
                                DEFERRABLE INITIALLY DEFERRED,
    brand                   text NOT NULL CHECK (brand IN ('Remibrutinib', 'Fabhalta', 'Kisqali')),
    score                   double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    threshold               double precision NOT NULL CHECK (threshold > 0 AND threshold < 1),
    predicted_label         boolean NOT NULL,
    recommended_action      text CHECK (recommended_action IN (
                                'schedule_rep_visit', 'send_email', 'invite_to_webinar',
                                'share_clinical_data', 'offer_speaker_program', 'provide_samples')),
    prediction_timestamp    timestamp with time zone NOT NULL,
    data_split              text NOT NULL CHECK (data_split IN ('train', 'validation', 'test', 'holdout')),
    CONSTRAINT ml_predictions_label_from_threshold CHECK (predicted_label = (score >= threshold)),
    CONSTRAINT ml_predictions_patient_iff_patient_entity
        CHECK ((patient_id IS NOT NULL) = (entity_type = 'patient')),
    CONSTRAINT ml_predictions_action_iff_next_best_action
        CHECK ((recommended_action IS NOT NULL) = (prediction_type = 'next_best_action'))
);
CREATE INDEX ml_predictions_timestamp_idx ON ml_predictions (prediction_timestamp);
CREATE INDEX ml_predictions_patient_idx ON ml_predictions (patient_id);
CREATE INDEX ml_predictions_hcp_idx ON ml_predictions (hcp_id);

CREATE TABLE triggers (
    trigger_id              text PRIMARY KEY CHECK (trigger_id ~ '^TRG-[0-9]{8}-[0-9]{6}$'),
    hcp_id                  text NOT NULL REFERENCES hcp_profiles (hcp_id)
                                DEFERRABLE INITIALLY DEFERRED,
    patient_id              text REFERENCES patient_journeys (patient_id)
                                DEFERRABLE INITIALLY DEFERRED,
    brand                   text NOT NULL CHECK (brand IN ('Remibrutinib', 'Fabhalta', 'Kisqali')),
    trigger_type            text NOT NULL CHECK (trigger_type IN (
                                'new_patient_diagnosed', 'refill_gap', 'high_propensity',
                                'competitive_switch_risk', 'engagement_drop')),
    priority                text NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    reason                  text NOT NULL,
    channel                 text NOT NULL CHECK (channel IN ('rep_app', 'email', 'crm_task')),
    created_at              timestamp with time zone NOT NULL,
    status                  text NOT NULL CHECK (status IN (
                                'created', 'delivered', 'viewed', 'accepted', 'dismissed',
                                'expired')),
    delivered_at            timestamp with time zone,
    viewed_at               timestamp with time zone,
    resolved_at             timestamp with time zone,
    data_split              text NOT NULL CHECK (data_split IN ('train', 'validation', 'test', 'holdout')),
    CONSTRAINT triggers_status_matches_timestamps CHECK (CASE status
        WHEN 'created' THEN delivered_at IS NULL AND viewed_at IS NULL AND resolved_at IS NULL
        WHEN 'delivered' THEN delivered_at IS NOT NULL AND viewed_at IS NULL AND resolved_at IS NULL
        WHEN 'viewed' THEN delivered_at IS NOT NULL AND viewed_at IS NOT NULL AND resolved_at IS NULL
        WHEN 'expired' THEN delivered_at IS NOT NULL AND resolved_at IS NOT NULL
        ELSE delivered_at IS NOT NULL AND viewed_at IS NOT NULL AND resolved_at IS NOT NULL END),
    CONSTRAINT triggers_lifecycle_ordered CHECK (
        (delivered_at IS NULL OR delivered_at >= created_at)
        AND (viewed_at IS NULL OR viewed_at >= coalesce(delivered_at, created_at))
        AND (resolved_at IS NULL OR resolved_at >= coalesce(viewed_at, delivered_at, created_at))),
    CONSTRAINT triggers_patient_iff_patient_type CHECK ((patient_id IS NOT NULL)
        = (trigger_type IN ('new_patient_diagnosed', 'refill_gap', 'high_propensity',
                            'competitive_switch_risk')))
);
CREATE INDEX triggers_created_at_idx ON triggers (created_at);
CREATE INDEX triggers_hcp_idx ON triggers (hcp_id);
CREATE INDEX triggers_patient_idx ON triggers (patient_id);
