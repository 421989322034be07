"""Thin Dagster assets: choose the scenario (and partition), call the generator, return it."""

import warnings

import dagster as dg

# BackfillPolicy.single_run (one run for a partition range) is marked beta in Dagster 1.13.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
