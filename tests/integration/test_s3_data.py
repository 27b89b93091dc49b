"""Loading training data over the S3 protocol from a real S3-compatible server on loopback."""

from __future__ import annotations

import io

import pytest

from driftloop import synthetic
from driftloop.data import load_table, sha256_bytes
from driftloop.errors import DataError, UnavailableError


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    client = s3_server.settings().client()
    if not client.bucket_exists("training"):
        client.make_bucket("training")
    return "training"


def _put(s3_server, bucket: str, key: str, data: bytes) -> None:
    s3_server.settings().client().put_object(bucket, key, io.BytesIO(data), len(data))


def test_loads_csv_and_parquet_from_s3_with_the_file_hash(s3_server, bucket, tmp_path) -> None:
    frame = synthetic.generate(300, seed=3)
    csv_bytes = frame.to_csv(index=False).encode()
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    parquet_bytes = (tmp_path / "t.parquet").read_bytes()
    _put(s3_server, bucket, "data/train.csv", csv_bytes)
    _put(s3_server, bucket, "data/train.parquet", parquet_bytes)

    loaded_csv, sha_csv = load_table(f"s3://{bucket}/data/train.csv", s3_server.settings())
    loaded_parquet, sha_parquet = load_table(f"s3://{bucket}/data/train.parquet", s3_server.settings())

    assert len(loaded_csv) == len(loaded_parquet) == 300
    assert list(loaded_parquet.columns) == list(frame.columns)
    assert sha_csv == sha256_bytes(csv_bytes) and sha_parquet == sha256_bytes(parquet_bytes)


def test_missing_object_is_a_clear_error_without_credentials(s3_server, bucket) -> None:
    with pytest.raises(DataError) as caught:
        load_table(f"s3://{bucket}/nope.csv", s3_server.settings())
    message = str(caught.value)
    assert "nope.csv" in message and "NoSuchKey" in message
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in message


def test_unreachable_endpoint_is_a_clear_error(s3_server) -> None:
    from driftloop.storage import S3Settings

    settings = S3Settings(endpoint="127.0.0.1:9", secure=False, access_key="k", secret_key="s")
    with pytest.raises(UnavailableError, match="cannot reach S3 endpoint 127.0.0.1:9"):
        load_table("s3://training/x.csv", settings)
