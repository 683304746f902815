"""A real S3 API on loopback for tests: moto's server, with every request counted.

Checks real S3 makes and moto does not are made here: a presigned request that arrives
after its ``X-Amz-Date`` + ``X-Amz-Expires`` is refused (403 ``Request has expired``), one
signed for another region than the bucket's is refused naming the bucket's region (400
``AuthorizationQueryParametersError``), and a body that does not match its ``Content-MD5``
is refused (400 ``BadDigest``).
"""

from __future__ import annotations

import base64
import calendar
import dataclasses
import email.utils
import hashlib
import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

# Credentials and region for moto; nothing here is a secret, and no request leaves loopback.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class S3Request:
    """One request the server answered: who sent it (the access key id) and when (this
    machine's monotonic clock, which every process here shares)."""

    method: str
    path: str
    query: str
    access_key: str = ""
    at: float = 0.0
    refused: bool = False
    status: int = 0  # the HTTP status answered (0 until the answer starts)


SERVICE_UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>injected by the test</Message></Error>"
)
EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)
BAD_DIGEST = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code>'
    b"<Message>The Content-MD5 you specified did not match what we received.</Message></Error>"
)


def _access_key(environ: dict[str, Any], query: dict[str, list[str]]) -> str:
    """The access key id of a request signed in its header or in its query (presigned)."""
    credential = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2]
    credential = credential or query.get("X-Amz-Credential", [""])[0]
    return credential.partition("/")[0]


def _expired(query: dict[str, list[str]], now: float) -> bool:
    """Whether a presigned request came after its expiry (``now``: the server's clock)."""
    if "X-Amz-Expires" not in query:
        return False
    signed = time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    return now > calendar.timegm(signed) + int(query["X-Amz-Expires"][0])


def _wrong_region(environ: dict[str, Any], query: dict[str, list[str]]) -> str | None:
    """The bucket's region when a presigned request was signed for another one."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    credential = query.get("X-Amz-Credential", [""])[0].split("/")
    name = environ.get("PATH_INFO", "").strip("/").partition("/")[0]
    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["global"].buckets.get(name)
    if len(credential) < 3 or bucket is None or credential[2] == bucket.region_name:
        return None
    return str(bucket.region_name)


def _wrong_region_error(signed_for: str, region: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Error>'
        "<Code>AuthorizationQueryParametersError</Code><Message>Error parsing the "
        f"X-Amz-Credential parameter; the region '{signed_for}' is wrong; expecting "
        f"'{region}'</Message><Region>{region}</Region></Error>"
    ).encode()


def _bad_digest(environ: dict[str, Any]) -> bool:
    """Whether a body does not match its Content-MD5 (the body is kept for moto to read)."""
    expected = environ.get("HTTP_CONTENT_MD5")
    if expected is None:
        return False
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    return base64.b64encode(hashlib.md5(body).digest()).decode() != expected


class _DatedByServerClock(MotoRequestHandler):
    """S3 dates its answers by its own clock (what a job's lease fence measures by)."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(self.server.server_clock(), usegmt=True)  # type: ignore[attr-defined]


class S3Server:
    """moto's S3 on 127.0.0.1 with an OS-chosen port; ``requests`` lists what it served."""

    def __init__(self) -> None:
        self.requests: list[S3Request] = []
        # A fault to inject: requests for which this says True are answered 503.
        self.refuse: Callable[[S3Request], bool] | None = None
        # Another: the S3 error code (e.g. InvalidAccessKeyId) a request is refused with (403).
        self.refuse_with: Callable[[S3Request], str | None] | None = None
        # And one more: requests for which this says True get half their body, then the
        # connection is closed (the length header still promises all of it).
        self.cut_short: Callable[[S3Request], bool] | None = None
        # The server's wall clock: presigned requests expire by it, answers are dated by it.
        self.clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server(
            "127.0.0.1",
            0,
            self._counting(DomainDispatcherApplication(create_backend_app)),
            threaded=True,
            request_handler=_DatedByServerClock,
        )
        self._server.server_clock = lambda: self.clock()  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _counting(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            request = S3Request(
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                environ.get("QUERY_STRING", ""),
                access_key=_access_key(environ, query),
                at=time.monotonic(),
            )
            refuse = self.refuse
            if refuse is not None and refuse(request):
                request = dataclasses.replace(request, refused=True)
            with self._lock:
                self.requests.append(request)
            if request.refused:
                return self._answer(
                    request, start_response, "503 Service Unavailable", SERVICE_UNAVAILABLE
                )
            code = self.refuse_with(request) if self.refuse_with is not None else None
            if code is not None:
                error = f"<Error><Code>{code}</Code><Message>refused</Message></Error>"
                return self._answer(request, start_response, "403 Forbidden", error.encode())
            region = _wrong_region(environ, query)
            if region is not None:
                signed_for = query["X-Amz-Credential"][0].split("/")[2]
                error = _wrong_region_error(signed_for, region)
                return self._answer(request, start_response, "400 Bad Request", error)
            if _expired(query, self.clock()):
                return self._answer(request, start_response, "403 Forbidden", EXPIRED)
            if _bad_digest(environ):
                return self._answer(request, start_response, "400 Bad Request", BAD_DIGEST)

            def answered(status: str, headers: Any, *args: Any) -> Any:
                request.status = int(status.split()[0])
                return start_response(status, headers, *args)

            if self.cut_short is not None and self.cut_short(request):
                body = b"".join(app(environ, answered))
                return [body[: len(body) // 2]]
            return app(environ, answered)

        return counted

    @staticmethod
    def _answer(
        request: S3Request, start_response: Callable[..., Any], status: str, body: bytes
    ) -> list[bytes]:
        request.status = int(status.split()[0])
        start_response(status, [("Content-Type", "application/xml")])
        return [body]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def environment(self) -> dict[str, str]:
        """Variables that point AWS clients (and MarketPipe) at this server."""
        return {**AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": self.url}

    def point_here(self, monkeypatch: Any, **extra: str) -> None:
        """Point this process's AWS clients (and MarketPipe) at the server for one test."""
        for name, value in {**self.environment, **extra}.items():
            monkeypatch.setenv(name, value)

    def client(self) -> Any:
        """A boto3 S3 client of this server, with its test credentials."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self) -> str:
        """A new, empty bucket's name."""
        name = f"lake-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def put_directly(self, bucket: str, keys: Iterable[str], body: bytes) -> None:
        """Store objects without HTTP (moto's backend, in this process): a fast test setup."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for key in keys:
            backend.put_object(bucket, key, body)

    def count(self, method: str | None = None, marker: str = "") -> int:
        """How many requests (of ``method``, whose query contains ``marker``) were served."""
        with self._lock:
            return sum(
                1
                for request in self.requests
                if (method is None or request.method == method) and marker in request.query
            )

    def start(self) -> S3Server:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """A started :class:`S3Server`, stopped on exit."""
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()
