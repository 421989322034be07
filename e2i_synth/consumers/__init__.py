"""Reference consumers: the queries agents (and our answer-key checks) run on the loaded data."""
