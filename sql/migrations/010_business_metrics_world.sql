-- 010: business_metrics read from the simulated market. trx, nrx and market_share rows carry
-- the simulated fills behind them (simulated_count) and market_share its denominator
-- (market_trx, the class's TRx), so regional shares roll up. Their target is the same world
-- without the planted access shocks, which is 0 NRx in a region-month without a first fill:
-- target may be 0, and achievement_rate (and roi) are then null. Rows of the older generator
-- (no counts) are derived data: they are removed, and the next business_metrics load rebuilds
-- them.

DELETE FROM business_metrics;

ALTER TABLE business_metrics
    ADD COLUMN simulated_count integer CHECK (simulated_count >= 0),
    ADD COLUMN market_trx double precision CHECK (market_trx > 0),
    ALTER COLUMN achievement_rate DROP NOT NULL,
    DROP CONSTRAINT business_metrics_target_check,
    ADD CONSTRAINT business_metrics_target_check CHECK (target >= 0),
    DROP CONSTRAINT business_metrics_achievement_reconciles,
    ADD CONSTRAINT business_metrics_achievement_reconciles CHECK (CASE
        WHEN target > 0
            THEN abs(achievement_rate - value / target) <= 1e-9 * greatest(abs(value / target), 1)
        ELSE achievement_rate IS NULL END),
    DROP CONSTRAINT business_metrics_roi_iff_volume,
    ADD CONSTRAINT business_metrics_roi_iff_volume
        CHECK ((roi IS NOT NULL) = (metric_type = 'volume' AND target > 0)),
    ADD CONSTRAINT business_metrics_count_iff_world
        CHECK ((simulated_count IS NOT NULL) = (metric_name IN ('trx', 'nrx', 'market_share'))),
    ADD CONSTRAINT business_metrics_denominator_iff_share
        CHECK ((market_trx IS NOT NULL) = (metric_name = 'market_share'));
