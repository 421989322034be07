"""What happens, dated: treatment_events, ml_predictions and triggers."""
