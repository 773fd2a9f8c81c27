"""GPU time: each attempt's device and wall time, study GPU-hour budgets, team usage."""
