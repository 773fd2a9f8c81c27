"""Live updates: each study's events as a Server-Sent Events stream, resumable exactly."""
