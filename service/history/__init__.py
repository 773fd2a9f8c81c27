"""Read models for dashboards and analysis: study summaries, optimization history, change
feeds, learning curves, parameter importances and exports. Nothing here writes."""
