"""Keeping credentials out of what drsta records: URIs with `user:password@` lose them before they are logged,
written to a file, printed or handed to a job.

MLflow reads a tracking server's credentials from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or
MLFLOW_TRACKING_TOKEN); a tracking URI never needs to carry them.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_credentials(uri: str) -> str:
    """`uri` without the `user:password@` part of its authority; anything else is returned unchanged.

    >>> redact_credentials("https://alice:s3cret@mlflow.example:5000/path")
    'https://mlflow.example:5000/path'
    >>> redact_credentials("postgresql://drsta:pw@db/mlflow")
    'postgresql://db/mlflow'
    >>> redact_credentials("sqlite:////abs/mlflow.db")
    'sqlite:////abs/mlflow.db'
    """
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def has_credentials(uri: str) -> bool:
    """Whether `uri` carries `user[:password]@` in its authority."""
    return "@" in urlsplit(uri).netloc
