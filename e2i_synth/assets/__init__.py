"""Thin Dagster wrappers: choose the scenario (and partition), call the generator, return the frame."""
