"""The S3 client of the server: presigned URLs, multipart uploads, heads and deletes.

Only the server holds credentials; workers get presigned URLs, which point at the endpoint the
server is configured with (``AWS_ENDPOINT_URL`` or AWS itself), so workers must reach it too.
A custom endpoint (MinIO, a GCS interoperability endpoint, moto) is addressed path-style.
Every call that talks to the bucket raises :class:`ObjectStoreUnavailable` when it cannot.
Thread-safe (boto3 clients are); one instance per server process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.artifacts.errors import ObjectStoreUnavailable
from service.artifacts.location import ArtifactLocation

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

_DELETE_BATCH = 1000  # S3's most keys per DeleteObjects


@dataclass(frozen=True)
class Part:
    number: int
    etag: str


@contextmanager
def _reaching(what: str) -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise ObjectStoreUnavailable(f"object storage did not {what}: {exc}") from exc


class ObjectStore:
    def __init__(self, location: ArtifactLocation, url_ttl_s: int) -> None:
        self.location = location
        self.url_ttl_s = url_ttl_s
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint else "auto"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        self._s3: S3Client = boto3.session.Session().client("s3", config=config)
        self.bucket = location.bucket

    # ---- presigned URLs (signed locally; no request to the bucket) ----

    def presign_put(self, key: str) -> str:
        return self._s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_ttl_s
        )

    def presign_part(self, key: str, upload_id: str, number: int) -> str:
        params = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number}
        return self._s3.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=self.url_ttl_s
        )

    def presign_get(self, key: str, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self._s3.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.url_ttl_s
        )

    # ---- calls to the bucket ----

    def check_reachable(self) -> None:
        """Raise ObjectStoreUnavailable unless the bucket answers (a presigned URL would be
        useless otherwise)."""
        with _reaching(f"answer for bucket {self.bucket!r}"):
            self._s3.head_bucket(Bucket=self.bucket)

    def create_multipart(self, key: str) -> str:
        with _reaching("start a multipart upload"):
            return self._s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[Part]) -> bool:
        """Assemble the parts; False when the bucket refuses them (missing or wrong ETags)."""
        listed: list[CompletedPartTypeDef] = [
            {"PartNumber": p.number, "ETag": p.etag} for p in parts
        ]
        try:
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
            )
        except ClientError as exc:
            if _status(exc) in (400, 404):
                return False
            raise ObjectStoreUnavailable(f"object storage did not complete: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"object storage did not complete: {exc}") from exc
        return True

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with _reaching("abort a multipart upload"):
            try:
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _status(exc) != 404:  # already completed or aborted
                    raise

    def size_of(self, key: str) -> int | None:
        """The object's size, or None when there is no such object."""
        with _reaching("answer a HEAD"):
            try:
                return self._s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
            except ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise

    def delete(self, keys: Sequence[str]) -> None:
        """Delete these objects (absent ones are no error)."""
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with _reaching("delete objects"):
                self._s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` and abort its unfinished multipart uploads;
        how many objects went. Idempotent."""
        with _reaching("list objects"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
            uploads = self._s3.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        for upload in uploads.get("Uploads", []):
            self.abort_multipart(upload["Key"], upload["UploadId"])
        self.delete(keys)
        return len(keys)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
