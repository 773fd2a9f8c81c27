"""The S3 client of the server: presigned URLs, multipart uploads, copies, heads and deletes.

Only the server holds credentials; workers get presigned URLs, which point at the endpoint the
server is configured with (``AWS_ENDPOINT_URL`` or AWS itself), so workers must reach it too.
A custom endpoint (MinIO, a GCS interoperability endpoint, moto) is addressed path-style.
Every call that talks to the bucket raises :class:`ObjectStoreUnavailable` when it cannot.
Thread-safe (boto3 clients are); one instance per server process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.artifacts.errors import ObjectStoreUnavailable
from service.artifacts.location import ArtifactLocation, part_size

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

_DELETE_BATCH = 1000  # S3's most keys per DeleteObjects
MAX_COPY_BYTES: Final = 5 * 1024**3  # S3's largest CopyObject, and its largest part


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
    """``copy_part_bytes``: objects up to this size are copied with one CopyObject, larger
    ones in parts of (about) this size; at most :data:`MAX_COPY_BYTES`, S3's limit of both."""

    def __init__(
        self, location: ArtifactLocation, url_ttl_s: int, *, copy_part_bytes: int = MAX_COPY_BYTES
    ) -> None:
        if not 0 < copy_part_bytes <= MAX_COPY_BYTES:
            raise ValueError(f"copy_part_bytes must be in 1..{MAX_COPY_BYTES}")
        self.location = location
        self.url_ttl_s = url_ttl_s
        self.copy_part_bytes = copy_part_bytes
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

    def copy(self, source_key: str, target_key: str, size: int) -> bool:
        """Copy the ``size`` bytes of ``source_key`` to ``target_key`` inside the bucket (the
        bytes never reach the server); False when there is no ``source_key``. Objects over
        ``copy_part_bytes`` go part by part (UploadPartCopy), an unfinished copy is aborted.
        The target is a new object: later writes of the source never reach it."""
        source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": source_key}
        with _reaching("copy an object"):
            try:
                if size <= self.copy_part_bytes:
                    self._s3.copy_object(Bucket=self.bucket, Key=target_key, CopySource=source)
                else:
                    self._copy_in_parts(source, target_key, size)
            except ClientError as exc:
                if _code(exc) == "NoSuchKey":
                    return False
                raise
        return True

    def _copy_in_parts(self, source: CopySourceTypeDef, target_key: str, size: int) -> None:
        each = part_size(size, self.copy_part_bytes) or size
        upload_id = self.create_multipart(target_key)
        try:
            parts: list[CompletedPartTypeDef] = []
            for number, start in enumerate(range(0, size, each), start=1):
                end = min(start + each, size) - 1
                answer = self._s3.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=target_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with suppress(ObjectStoreUnavailable):  # the study's deletion aborts it at the latest
                self.abort_multipart(target_key, upload_id)
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


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
