"""The web dashboard: plain HTML, CSS and JavaScript served by the API (no build step)."""
