"""The answer key, pure: what a scenario planted, what its sample realised, what a standard
method recovers, and the verdicts the blocking checks give on them.

No Dagster and no database here: the ground_truth generator, the asset checks (on frames read
back from PostgreSQL) and the many-seed test (on frames straight from the generators) call the
same functions, so a rule is stated once.
"""
