"""Test helper: download every object of a bucket (signed, as any S3 client) into a directory.

Usage: python3 s3_mirror.py ENDPOINT BUCKET PREFIX DEST
Prints the number of objects.
"""

import os
import sys

import boto3


def main(endpoint: str, bucket: str, prefix: str, dest: str) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            path = os.path.join(dest, key[len(prefix):].lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, key, path)
            n += 1
    print(n)


if __name__ == "__main__":
    main(*sys.argv[1:5])
