"""Test helper: talk to a local S3-compatible server as any S3 client does (boto3, signed).

Usage:
    python3 s3_tool.py mb ENDPOINT BUCKET                 create a bucket (there already: fine)
    python3 s3_tool.py ls ENDPOINT BUCKET                 print every key, one per line
    python3 s3_tool.py mirror ENDPOINT BUCKET PREFIX DEST download every object under PREFIX
                                                          into DEST; print how many
    python3 s3_tool.py cat ENDPOINT BUCKET KEY            print one object
    python3 s3_tool.py put ENDPOINT BUCKET KEY FILE       write one object (unconditionally)
"""

import os
import sys

import boto3


def client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def keys(s3, bucket: str, prefix: str = ""):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def main(cmd: str, endpoint: str, *args: str) -> None:
    s3 = client(endpoint)
    if cmd == "mb":
        # Idempotent: a create retried after its first attempt succeeded (the answer lost
        # under load) finds the bucket there, which is what the test wanted.
        try:
            s3.create_bucket(Bucket=args[0])
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        except s3.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") != "BucketAlreadyExists":
                raise
    elif cmd == "ls":
        for key in keys(s3, args[0]):
            print(key)
    elif cmd == "mirror":
        bucket, prefix, dest = args
        n = 0
        for key in keys(s3, bucket, prefix):
            path = os.path.join(dest, key[len(prefix):].lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, key, path)
            n += 1
        print(n)
    elif cmd == "cat":
        sys.stdout.buffer.write(s3.get_object(Bucket=args[0], Key=args[1])["Body"].read())
    elif cmd == "put":
        with open(args[2], "rb") as f:
            s3.put_object(Bucket=args[0], Key=args[1], Body=f.read())
    else:
        sys.exit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
