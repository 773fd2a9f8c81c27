"""Studies: creation, listing, state changes, deletion."""
