"""Thin Dagster assets: choose the scenario (and partition), call the generator, return it."""
