"""Sampling and pruning on a warm in-memory view of each study (see ``view.py``)."""
