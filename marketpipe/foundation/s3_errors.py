"""What an S3 client's error says: its HTTP status and its S3 error code.

boto3 raises botocore's ``ClientError`` with a ``response`` dict; these read it without
importing botocore, so that callers work (and import) where boto3 is not installed.
"""

from __future__ import annotations


def error_status(exc: Exception) -> int | None:
    """The HTTP status of a failed S3 request, ``None`` when the error carries none."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def error_code(exc: Exception) -> str:
    """The S3 error code of a failed request (``NoSuchKey``, ``AccessDenied`` ...), or ``""``."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))
