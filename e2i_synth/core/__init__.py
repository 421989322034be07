"""What every other package shares: the scenario, the vocabulary, seeds, frames, the table spec,
the split rule and the causal model. It imports nothing else of ours, and neither dagster nor
the database code, so a notebook can call it."""
