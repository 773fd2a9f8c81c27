"""Trials: hand-out (ask, claim, enqueue), leases, reports, completion, reads."""
