"""Artifact tests: moto's standalone S3 server (a real S3-protocol server, in its own process)
stands in for S3, MinIO or GCS's S3 interoperability endpoint; the API server is a real
uvicorn with ``HPO_ARTIFACT_URL`` pointing at it; the test drives the bucket through boto3."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest

from tests.support import ScratchDatabase, ServerProcess, free_port
from tests.workers.conftest import start_worker

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["start_worker"]  # the worker tests' fixture, run against the server below

API = "/api/v1"
PREFIX = "runs/hpo"
PART_BYTES = 5 * 1024 * 1024  # S3's smallest part, so a multipart test stays small
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """``python -m moto.server`` on a free port, killed at the end of the session."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Bucket:
    s3: S3Client
    name: str

    def keys(self, under: str = "") -> list[str]:
        answer = self.s3.list_objects_v2(Bucket=self.name, Prefix=under)
        return sorted(o["Key"] for o in answer.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket(moto_url: str) -> Bucket:
    """A new bucket for the test, made through boto3 like on any S3."""
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    name = f"hpo-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return Bucket(s3, name)


@pytest.fixture
def server(db: ScratchDatabase, bucket: Bucket, moto_url: str) -> Iterator[ServerProcess]:
    """The API server with object storage (also what ``start_worker`` runs workers against)."""
    env = {
        "HPO_ARTIFACT_URL": f"s3://{bucket.name}/{PREFIX}",
        "HPO_ARTIFACT_PART_BYTES": str(PART_BYTES),
        "AWS_ENDPOINT_URL": moto_url,
        **CREDENTIALS,
    }
    with ServerProcess(db.url_string, env=env, token=db.token) as s:
        yield s


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, headers=server.headers, timeout=30) as c:
        yield c


def lease_headers(trial: dict[str, Any]) -> dict[str, str]:
    return {"X-Lease-Token": trial["lease"]["token"]}


def artifact_env(bucket: Bucket, moto_url: str, **extra: str) -> dict[str, str]:
    """The server environment of ``server`` (object storage on ``bucket``), plus ``extra``."""
    return {
        "HPO_ARTIFACT_URL": f"s3://{bucket.name}/{PREFIX}",
        "HPO_ARTIFACT_PART_BYTES": str(PART_BYTES),
        "AWS_ENDPOINT_URL": moto_url,
        **CREDENTIALS,
        **extra,
    }
