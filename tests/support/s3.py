"""An S3 server on 127.0.0.1 (moto) for the storage tests: a bucket, and the environment that reaches it.

The credentials are moto's dummy values, given only through the environment, as a user's would be.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    env: dict[str, str]  # what a process needs to reach it (AWS_* variables)

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@contextlib.contextmanager
def s3_server(bucket: str = "ccs-test") -> Iterator[S3Server]:
    """A moto S3 server with one empty bucket; this process's environment points at it while it runs.

    moto keeps its buckets in this process's memory, shared by every server it starts: each new server begins
    by clearing them (``/moto-api/reset``), so no test sees another's objects."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=30).close()
    env = {"AWS_ACCESS_KEY_ID": "moto-" + secrets.token_hex(4), "AWS_SECRET_ACCESS_KEY": "moto-secret-" + secrets.token_hex(8),
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        found = S3Server(env["AWS_ENDPOINT_URL"], bucket, env)
        found.client().create_bucket(Bucket=bucket)
        yield found
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
