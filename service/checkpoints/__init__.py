"""Checkpoints of running trials: the last one of each trial, so a trial handed back to the
queue (lease released or expired) resumes on whichever worker gets it next.

``store`` states the storage contract, ``postgres_store`` and ``file_store`` implement it,
``repository`` holds the SQL, ``service`` the lease rules, ``endpoints`` the HTTP.
"""
