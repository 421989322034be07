"""The feature store: feature_groups and features (the catalog) and feature_values."""
