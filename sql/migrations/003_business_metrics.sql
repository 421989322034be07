-- 003: business_metrics, the monthly KPI series per brand x region x metric against target.
-- Columns mirror the pandera model in e2i_synth/schemas/business_metrics.py; the CHECKs mirror
-- its ranges, enumerations and row rules. The series arithmetic across rows (mom_change,
-- yoy_change) and the national TRx ranges are asset checks, not constraints.

CREATE TABLE business_metrics (
    metric_id                   text PRIMARY KEY
                                    CHECK (metric_id ~ '^BM-[A-Za-z]+-[a-z]+-[a-z_]+-[0-9]{4}-[0-9]{2}$'),
    metric_date                 date NOT NULL
                                    CHECK (metric_date = date_trunc('month', metric_date)::date),
    metric_type                 text NOT NULL CHECK (metric_type IN (
                                    'volume', 'share', 'rate', 'engagement', 'outcome')),
    metric_name                 text NOT NULL CHECK (metric_name IN (
                                    'trx', 'nrx', 'market_share', 'conversion_rate',
                                    'hcp_engagement_score', 'adherence_rate', 'os_rate')),
    brand                       text NOT NULL CHECK (brand IN ('Remibrutinib', 'Fabhalta', 'Kisqali')),
    region                      text NOT NULL CHECK (region IN ('northeast', 'south', 'midwest', 'west')),
    value                       double precision NOT NULL CHECK (value >= 0),
    target                      double precision NOT NULL CHECK (target > 0),
    achievement_rate            double precision NOT NULL CHECK (achievement_rate >= 0),
    yoy_change                  double precision,
    mom_change                  double precision,
    roi                         double precision,
    statistical_significance    double precision NOT NULL
                                    CHECK (statistical_significance BETWEEN 0 AND 1),
    confidence_interval_lower   double precision NOT NULL CHECK (confidence_interval_lower >= 0),
    confidence_interval_upper   double precision NOT NULL CHECK (confidence_interval_upper >= 0),
    sample_size                 integer NOT NULL CHECK (sample_size >= 1),
    data_split                  text NOT NULL CHECK (data_split IN ('train', 'validation', 'test', 'holdout')),
    CONSTRAINT business_metrics_series_month_unique UNIQUE (metric_date, brand, region, metric_name),
    CONSTRAINT business_metrics_type_of_metric CHECK ((metric_name, metric_type) IN (
        ('trx', 'volume'), ('nrx', 'volume'), ('market_share', 'share'),
        ('conversion_rate', 'rate'), ('hcp_engagement_score', 'engagement'),
        ('adherence_rate', 'rate'), ('os_rate', 'outcome'))),
    CONSTRAINT business_metrics_achievement_reconciles
        CHECK (abs(achievement_rate - value / target) <= 1e-9 * greatest(abs(value / target), 1)),
    CONSTRAINT business_metrics_interval_contains_value
        CHECK (confidence_interval_lower <= value AND value <= confidence_interval_upper),
    CONSTRAINT business_metrics_within_scale CHECK (CASE
        WHEN metric_name IN ('market_share', 'conversion_rate', 'adherence_rate', 'os_rate')
            THEN value <= 1 AND target <= 1 AND confidence_interval_upper <= 1
        WHEN metric_type = 'engagement'
            THEN value <= 10 AND target <= 10 AND confidence_interval_upper <= 10
        ELSE true END),
    CONSTRAINT business_metrics_roi_iff_volume CHECK ((roi IS NOT NULL) = (metric_type = 'volume'))
);
-- The Gap Analyzer and the checks read whole series in month order.
CREATE INDEX business_metrics_series_idx ON business_metrics (brand, region, metric_name, metric_date);
