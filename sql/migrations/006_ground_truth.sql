-- 006: the answer key. One row per planted (or checked-as-absent) fact; details is JSON.

CREATE TABLE ground_truth (
    answer_id        text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('scenario', 'causal_effect', 'drift', 'gap')),
    subject          text NOT NULL,
    planted          boolean NOT NULL,
    expected_value   double precision,
    details          jsonb NOT NULL,
    scenario_hash    text NOT NULL CHECK (scenario_hash ~ '^[0-9a-f]{64}$'),
    seed             bigint NOT NULL CHECK (seed >= 0),
    package_version  text NOT NULL
);
CREATE INDEX ground_truth_kind_idx ON ground_truth (kind);

SELECT e2i_secure_table('ground_truth');
