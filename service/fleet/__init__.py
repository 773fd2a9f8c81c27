"""The workers fleet as the service sees it: who asked for trials, and what they hold."""
