"""The simulated market every table is read from: pure (no dagster, no database), seeded by the
scenario, computed in blocks of patients so large scales stream in bounded memory."""
