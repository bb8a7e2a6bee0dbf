"""Compare-and-swap writes of one S3 object, through boto3 (the `aws` extra).

    obj = conditional_object("s3://bucket/results/study/.lease.json")  # None: no CAS on this store
    etag = obj.create(b"...")            # If-None-Match: *   -> Conflict if the object exists
    etag = obj.replace(b"...", etag)     # If-Match: <etag>   -> Conflict if it changed or is gone
    body, etag = obj.read()              # None if absent
    obj.delete(etag)                     # If-Match: <etag>   -> Conflict if it changed
    delete_object("s3://bucket/key")     # a plain delete (False: no boto3 here)

S3 has applied these preconditions atomically since 2024, as do MinIO and
recent moto; an S3-compatible store that ignores them would let two writers
both "create" one object. So `conditional_object` first checks the store once
per endpoint and bucket (honours_preconditions: a probe object created twice
with If-None-Match, then replaced with If-Match on a wrong ETag; both must be
refused). The answer is remembered for the life of the process. Other URI schemes (gs://,
file://) and a missing boto3 get None: the caller keeps a protocol that needs
no preconditions (raylab/results/lock.py).
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import uuid
from urllib.parse import parse_qs, urlparse

from raylab.errors import StorageError

_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"}
_UNSUPPORTED = {"NotImplemented", "501"}


class Conflict(Exception):
    """The precondition failed: another writer's version is there (or none is, for If-Match)."""


class Unsupported(Exception):
    """The store refuses the precondition header itself."""


class ConditionalObject:
    """One S3 object written only under a precondition; etags as S3 returns them (quoted)."""

    def __init__(self, client, bucket: str, key: str, uri: str):
        self.client, self.bucket, self.key, self.uri = client, bucket, key, uri

    def create(self, body: bytes) -> str:
        return self._call("put_object", Body=body, IfNoneMatch="*")["ETag"]

    def replace(self, body: bytes, etag: str) -> str:
        return self._call("put_object", Body=body, IfMatch=etag)["ETag"]

    def read(self) -> tuple[bytes, str] | None:
        try:
            got = self._call("get_object")
        except Conflict:  # NoSuchKey: nothing there
            return None
        return got["Body"].read(), got["ETag"]

    def delete(self, etag: str) -> None:
        """Delete the version with `etag`; Conflict if the object now holds another. A store that
        refuses If-Match on DELETE (S3 took it later than on PUT) is asked which version it holds."""
        try:
            self._call("delete_object", IfMatch=etag)
        except Unsupported:
            found = self.read()
            if found is None or found[1] != etag:
                raise Conflict("another version") from None
            self._call("delete_object")

    def _call(self, method: str, **kw):
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, Key=self.key, **kw)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if error.get("Code") in _CONFLICT or status in _CONFLICT:
                raise Conflict(error.get("Code") or status) from None
            if error.get("Code") in _UNSUPPORTED or status in _UNSUPPORTED:
                raise Unsupported(error.get("Code") or status) from None
            raise StorageError(self.uri, exc) from None


def conditional_object(uri: str) -> ConditionalObject | None:
    """The object at an s3:// `uri` for compare-and-swap writes, or None where the store (or this
    install: no boto3) cannot do them."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        return None
    try:
        import boto3  # noqa: F401
    except ImportError:
        print("raylab: boto3 is not installed (pip install 'raylab[aws]'), so the s3:// lease cannot be a "
              "compare-and-swap: it is written and read back instead", file=sys.stderr)
        return None
    endpoint, region = _endpoint(parsed)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    store = (endpoint, region, bucket)
    if store not in _HONOURS:
        _HONOURS[store] = honours_preconditions(_client(endpoint, region), bucket, key.rpartition("/")[0])
    return ConditionalObject(_client(endpoint, region), bucket, key, uri) if _HONOURS[store] else None


_HONOURS: dict[tuple, bool] = {}  # (endpoint, region, bucket) -> whether it applies preconditions


def honours_preconditions(client, bucket: str, prefix: str) -> bool:
    """Whether the store applies If-None-Match and If-Match on PUT: a probe object under `prefix`
    is created twice with If-None-Match: *, then replaced with If-Match on an ETag it never had;
    a store that honours both refuses the second and the third write."""
    key = f"{prefix}/.raylab-precondition-probe-{uuid.uuid4().hex}".lstrip("/")
    probe = ConditionalObject(client, bucket, key, f"s3://{bucket}/{key}")
    try:
        probe.create(b"probe")
        for write in (lambda: probe.create(b"probe"), lambda: probe.replace(b"probe", '"not-its-etag"')):
            try:
                write()
                return False  # the write went through: the store ignores that precondition
            except Conflict:
                pass
        return True
    except (Conflict, Unsupported):  # the first create refused, or the header refused outright
        return False
    finally:
        with contextlib.suppress(Exception):  # tidying the probe: a failure here changes no answer
            client.delete_object(Bucket=bucket, Key=key)


def delete_object(uri: str) -> bool:
    """Delete one s3:// object with a plain DeleteObject; False (nothing done) without boto3.
    pyarrow's delete_file also writes an empty "folder/" marker for the parent (pyarrow 26):
    a probe deleted that way would leave that marker behind."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        return False
    parsed = urlparse(uri)
    try:
        _client(*_endpoint(parsed)).delete_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
    except Exception as exc:  # botocore's errors: the store's own words, in one line
        raise StorageError(uri, exc) from None
    return True


@functools.lru_cache(maxsize=None)
def _client(endpoint: str | None, region: str | None):
    """A boto3 S3 client; the endpoint and keys come from the URI's query (pyarrow's
    endpoint_override, scheme, region) or the standard AWS variables, as pyarrow reads them."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=region)


def _endpoint(parsed) -> tuple[str | None, str | None]:
    """(endpoint URL, region) as pyarrow would use them: the URI's query, else the AWS variables
    (resolved here, so a client made for one endpoint is never reused for another)."""
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    override = query.get("endpoint_override")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if override:
        endpoint = override if "://" in override else f"{query.get('scheme', 'https')}://{override}"
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return endpoint, region
