"""HPO service: Bayesian optimization over HTTP, stored in PostgreSQL, sampled by Optuna."""

__version__ = "0.1.0"
