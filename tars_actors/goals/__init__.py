"""Goal calls: TARS phones someone for the owner with an objective, and reports back."""
