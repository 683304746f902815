"""Writes to an S3 lake that the server itself refuses once this run's lease has expired.

A check before a request cannot stop a write that was past the check when its process was
paused (SIGSTOP, a suspended VM, a long GC) and that leaves once the process resumes, after
another controller took the lake over. So every write of lake data is a presigned request
whose signature expires no later than the lease: S3 answers ``403 Request has expired`` when
it arrives later, however long the pause was. The deadline is counted in whole seconds by the
server's clock, so this machine's clock must not run ahead of the server's by more than the
lease's safety margin (NTP keeps it within milliseconds); a clock behind the server's makes
writes fail early, and the error says so.

The lease object itself is written with boto3 (its conditional PUT is the fence); every other
write goes through :class:`FencedWriter`.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import random
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

from marketpipe.lake.fencing import check_fence
from marketpipe.lake.store_types import S3_MAX_CONNECTIONS, missing_bucket

UNFENCED_EXPIRY = 900  # seconds a write's signature lives when no lease guards the lake
ATTEMPTS = 5  # tries of one write against transient failures (throttling, 5xx, connection)
RETRY_BASE_SECONDS = 0.2
RETRY_CAP_SECONDS = 5.0
NEAR_EXPIRY_WAIT = 0.1  # seconds to wait for a renewal when under a second of lease is left
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"})
EXPIRED_MESSAGE = "Request has expired"
# How S3 answers a request signed for another region than the bucket's.
WRONG_REGION_CODES = frozenset(
    {"AuthorizationQueryParametersError", "AuthorizationHeaderMalformed", "PermanentRedirect"}
)
# Request parameters that travel as signed headers: the request must send them as signed.
SIGNED_HEADERS = {"ContentMD5": "Content-MD5", "IfNoneMatch": "If-None-Match"}


class S3WriteError(RuntimeError):
    """S3 refused a write for good; the message names the object, the status and S3's code."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        # The shape of botocore's ClientError.response, so callers test both alike.
        self.response = {"ResponseMetadata": {"HTTPStatusCode": status}, "Error": {"Code": code}}


@dataclass(frozen=True)
class S3Answer:
    """What S3 answered a write: the status, its error code and message, the new ETag, and
    the bucket's region when S3 named it."""

    status: int
    code: str = ""
    message: str = ""
    etag: str | None = None
    region: str | None = None

    @classmethod
    def parse(cls, status: int, headers: Any, body: bytes) -> S3Answer:
        """Read the status, ``ETag`` and an error body's ``Code`` and ``Message``."""
        fields: dict[str, str] = {}
        if status >= 300 and body:
            try:
                root = ElementTree.fromstring(body)
            except ElementTree.ParseError:
                root = None
            for node in root.iter() if root is not None else ():
                fields.setdefault(node.tag, node.text or "")
        region = fields.get("Region") or headers.get("x-amz-bucket-region")
        return cls(
            status, fields.get("Code", ""), fields.get("Message", ""), headers.get("ETag"), region
        )

    @property
    def expired(self) -> bool:
        """The request arrived after its signature expired."""
        return self.status == 403 and self.message == EXPIRED_MESSAGE

    @property
    def transient(self) -> bool:
        """Worth another try: throttling or a server-side failure."""
        return self.status in TRANSIENT_STATUS or self.code in TRANSIENT_CODES


class FencedWriter:
    """PUTs and DELETEs of one bucket, each signed to expire no later than the lake's lease."""

    def __init__(
        self,
        lake_uri: str,
        bucket: str,
        client: Any,
        client_for_region: Callable[[str], Any],
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``client`` (boto3, SigV4) signs, ``client_for_region`` makes one that signs for
        the bucket's region when S3 says it is another; requests go out through botocore's
        HTTP session, with the proxy and CA bundle settings boto3 itself would use."""
        from botocore.httpsession import URLLib3Session

        self.lake_uri = lake_uri
        self.bucket = bucket
        self.client = client
        self.client_for_region = client_for_region
        self.sleep = sleep
        self.jitter = jitter
        endpoint = client.meta.endpoint_url
        host = urlparse(endpoint).hostname or ""
        proxies = {} if proxy_bypass(host) else getproxies()
        self._http = URLLib3Session(
            verify=os.environ.get("AWS_CA_BUNDLE") or True,
            proxies={scheme: url for scheme, url in proxies.items() if scheme in ("http", "https")},
            timeout=(10, 120),
            max_pool_connections=S3_MAX_CONNECTIONS,
        )

    def put(self, lake_key: str, object_key: str, data: bytes, *, create_only: bool) -> bool:
        """PUT ``data``; with ``create_only`` only if no object is there (``If-None-Match``).
        False when that condition failed (an object was there first)."""
        digest = base64.b64encode(hashlib.md5(data).digest()).decode()  # S3 checks the body
        params = {"Bucket": self.bucket, "Key": object_key, "ContentMD5": digest}
        if create_only:
            params["IfNoneMatch"] = "*"
        answer = self._send("put_object", "PUT", params, data, f"writing {lake_key}")
        return answer.status != 412

    def delete(self, lake_key: str, object_key: str) -> None:
        """DELETE the object (S3 answers success whether or not it was there)."""
        params = {"Bucket": self.bucket, "Key": object_key}
        self._send("delete_object", "DELETE", params, b"", f"deleting {lake_key}")

    def _send(
        self, operation: str, method: str, params: dict[str, str], body: bytes, action: str
    ) -> S3Answer:
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import BotoCoreError

        headers = {header: params[key] for key, header in SIGNED_HEADERS.items() if key in params}
        failure, expired = "", False
        for attempt in range(ATTEMPTS):
            if attempt:
                self.sleep(self.jitter() * min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt))
            url = self._signed_url(operation, params, action)
            request = AWSRequest(method=method, url=url, data=body, headers=headers).prepare()
            try:
                response = self._http.send(request)
            except BotoCoreError as exc:  # its text holds the signed URL: name the kind only
                failure, expired = type(exc).__name__, False
                continue
            answer = S3Answer.parse(response.status_code, response.headers, response.content)
            if answer.status < 300 or (answer.status == 412 and "IfNoneMatch" in params):
                return answer
            failure, expired = f"{answer.status} {answer.code}", answer.expired
            if expired:
                # Sent too late: raises LeaseLost if the lease went meanwhile; else this
                # thread was slow while the lease was renewed, and a new signature will do.
                check_fence(action, self.lake_uri)
            elif not self._moved_to_the_buckets_region(answer) and not answer.transient:
                raise self._refusal(answer, action)
        if expired:
            raise S3WriteError(
                f"S3 refused {action} in {self.lake_uri} {ATTEMPTS} times: its signature had "
                "expired by the server's clock although this run's lease is valid by this "
                "machine's; this machine's clock is behind the server's: synchronise it (NTP) "
                "and run again",
                403,
                "AccessDenied",
            )
        raise S3WriteError(
            f"S3 did not accept {action} in {self.lake_uri} after {ATTEMPTS} tries "
            f"(last: {failure}); the next run retries it",
            0,
            failure,
        )

    def _signed_url(self, operation: str, params: dict[str, str], action: str) -> str:
        """A presigned URL whose expiry is no later than the lease (or raise LeaseLost)."""
        while True:
            remaining = check_fence(action, self.lake_uri)
            expires = UNFENCED_EXPIRY if math.isinf(remaining) else int(remaining)
            if expires < 1:  # S3 counts whole seconds: wait for a renewal (or for the loss)
                self.sleep(NEAR_EXPIRY_WAIT)
                continue
            url = self.client.generate_presigned_url(operation, Params=params, ExpiresIn=expires)
            # Measured after signing: a pause in between must not stretch the signature.
            if check_fence(action, self.lake_uri) >= expires:
                return str(url)

    def _moved_to_the_buckets_region(self, answer: S3Answer) -> bool:
        """When S3 says the bucket is in another region than the one signed for, sign for
        that one from now on (boto3's own calls follow such redirects by themselves)."""
        if answer.code not in WRONG_REGION_CODES or not answer.region:
            return False
        if answer.region == self.client.meta.region_name:
            return False
        self.client = self.client_for_region(answer.region)
        return True

    def _refusal(self, answer: S3Answer, action: str) -> Exception:
        """The error for a write S3 refused for good."""
        if answer.code == "NoSuchBucket":
            return missing_bucket(self.bucket, self.lake_uri)
        return S3WriteError(
            f"S3 refused {action} in {self.lake_uri}: {answer.status} {answer.code} "
            f"({answer.message or 'no message'})",
            answer.status,
            answer.code,
        )
