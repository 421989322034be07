-- 001: the entity tables (HCPs and patient journeys) and the record of the active scenario.
-- Column lists and types mirror the pandera models in e2i_synth/schemas (a test proves it).
-- Foreign keys are DEFERRABLE INITIALLY DEFERRED so a table can be replaced (delete + COPY)
-- in one transaction while its children still point at the same keys.

CREATE TABLE hcp_profiles (
    hcp_id                  text PRIMARY KEY CHECK (hcp_id ~ '^HCP[0-9]{6}$'),
    npi                     text NOT NULL UNIQUE CHECK (npi ~ '^[0-9]{10}$'),
    first_name              text NOT NULL,
    last_name               text NOT NULL,
    specialty               text NOT NULL CHECK (specialty IN (
                                'allergy_immunology', 'dermatology', 'hematology',
                                'hematology_oncology', 'internal_medicine', 'medical_oncology',
                                'nephrology', 'primary_care')),
    practice_setting        text NOT NULL CHECK (practice_setting IN (
                                'academic_medical_center', 'community_hospital',
                                'private_practice', 'integrated_delivery_network')),
    academic_hcp            boolean NOT NULL,
    kol_flag                boolean NOT NULL,
    years_experience        integer NOT NULL CHECK (years_experience BETWEEN 1 AND 45),
    patient_volume_monthly  integer NOT NULL CHECK (patient_volume_monthly >= 1),
    region                  text NOT NULL CHECK (region IN ('northeast', 'south', 'midwest', 'west')),
    state                   text NOT NULL CHECK (state ~ '^[A-Z]{2}$'),
    brand_focus             text NOT NULL CHECK (brand_focus IN ('Remibrutinib', 'Fabhalta', 'Kisqali')),
    decile                  smallint NOT NULL CHECK (decile BETWEEN 1 AND 10),
    priority_tier           smallint NOT NULL CHECK (priority_tier BETWEEN 1 AND 4),
    adoption_stage          text NOT NULL CHECK (adoption_stage IN (
                                'innovator', 'early_adopter', 'early_majority',
                                'late_majority', 'laggard')),
    digital_engagement      double precision NOT NULL CHECK (digital_engagement BETWEEN 0 AND 1)
);
CREATE INDEX hcp_profiles_brand_region_idx ON hcp_profiles (brand_focus, region);

CREATE TABLE patient_journeys (
    patient_id              text PRIMARY KEY CHECK (patient_id ~ '^PAT[0-9]{7}$'),
    hcp_id                  text NOT NULL REFERENCES hcp_profiles (hcp_id)
                                DEFERRABLE INITIALLY DEFERRED,
    brand                   text NOT NULL CHECK (brand IN ('Remibrutinib', 'Fabhalta', 'Kisqali')),
    region                  text NOT NULL CHECK (region IN ('northeast', 'south', 'midwest', 'west')),
    journey_start_date      date NOT NULL,
    journey_end_date        date NOT NULL,
    age_at_diagnosis        smallint NOT NULL CHECK (age_at_diagnosis BETWEEN 18 AND 95),
    gender                  text NOT NULL CHECK (gender IN ('female', 'male')),
    insurance_type          text NOT NULL CHECK (insurance_type IN (
                                'commercial', 'medicare', 'medicaid', 'uninsured')),
    comorbidity_count       smallint NOT NULL CHECK (comorbidity_count >= 0),
    prior_treatment_count   smallint NOT NULL CHECK (prior_treatment_count >= 0),
    disease_severity        double precision NOT NULL CHECK (disease_severity BETWEEN 0 AND 10),
    academic_hcp            boolean NOT NULL,
    engagement_score        double precision NOT NULL CHECK (engagement_score BETWEEN 0 AND 10),
    treatment_initiated     boolean NOT NULL,
    days_to_treatment       integer CHECK (days_to_treatment >= 0),
    data_split              text NOT NULL CHECK (data_split IN ('train', 'validation', 'test', 'holdout')),
    CONSTRAINT patient_journeys_dates_ordered CHECK (journey_end_date >= journey_start_date),
    CONSTRAINT patient_journeys_days_iff_initiated
        CHECK ((days_to_treatment IS NOT NULL) = treatment_initiated),
    CONSTRAINT patient_journeys_treatment_in_journey
        CHECK (days_to_treatment IS NULL
               OR journey_start_date + days_to_treatment <= journey_end_date)
);
CREATE INDEX patient_journeys_hcp_idx ON patient_journeys (hcp_id);
CREATE INDEX patient_journeys_brand_region_idx ON patient_journeys (brand, region);

-- The scenario the data in this database was generated from (one row). Dagster runs that are
-- not given a scenario reuse it, so rematerializing one asset stays consistent with the rest.
CREATE TABLE e2i_active_scenario (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    scenario_hash   text NOT NULL,
    scenario_yaml   text NOT NULL,
    activated_at    timestamp with time zone NOT NULL DEFAULT now()
);
