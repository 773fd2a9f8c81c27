"""Teams, API tokens and roles: who is calling, and what they may touch."""
