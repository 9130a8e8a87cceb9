"""The team stack: shared MLflow (PostgreSQL + S3 + basic-auth), DVC on S3, Prefect server and
workers, started locally by ``make stack`` (``python -m entroad.stack``)."""
