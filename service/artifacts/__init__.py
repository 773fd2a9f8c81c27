"""Artifacts on S3-compatible object storage: checkpoints (the best and the last of each
trial) and other named files a task saves (the final model, a log), uploaded and downloaded by
the workers themselves through presigned URLs, recorded by the server only once an upload is
confirmed under a live lease. On only when ``HPO_ARTIFACT_URL`` is set (docs/artifacts.md).

``location`` parses the setting, ``objects`` wraps the S3 client (presigning, multipart,
deletes), ``repository`` holds the SQL of ``hpo_artifacts``, ``keep`` decides which
checkpoints and trials keep their artifacts, ``service`` the rules, ``endpoints`` the HTTP.
"""
