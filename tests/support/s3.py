"""A real S3-compatible server for tests: moto's standalone server, as a subprocess on 127.0.0.1.

Authentication is on (``INITIAL_NO_AUTH_ACTION_COUNT``): the first three requests create an IAM user allowed
``s3:*`` and its access key; every later request must be signed with that key, so wrong keys and wrong secrets
are rejected as a real endpoint rejects them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.wait import wait_for

REGION = "us-east-1"
_SETUP_REQUESTS = 3  # CreateUser, PutUserPolicy, CreateAccessKey
_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass(frozen=True)
class S3Server:
    """A running moto server and the credentials it accepts."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = REGION

    @property
    def env(self) -> dict[str, str]:
        """The ``AWS_*`` environment that points AWS tools (and trainforge) at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
        }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _create_user(endpoint: str) -> tuple[str, str]:
    import boto3

    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    iam.create_user(UserName="trainforge-tests")
    iam.put_user_policy(UserName="trainforge-tests", PolicyName="s3", PolicyDocument=json.dumps(_POLICY))
    key = iam.create_access_key(UserName="trainforge-tests")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


@contextlib.contextmanager
def moto_server(log_dir: Path | None = None) -> Iterator[S3Server]:
    """Start ``python -m moto.server`` on a free 127.0.0.1 port, create credentials, stop it on exit."""
    port = free_port()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="moto-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_REQUESTS)
    with open(log_dir / "moto.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"moto exited: {(log_dir / 'moto.log').read_text()[-2000:]}")
            return _listening(port)

        wait_for(up, timeout=60, what="moto server")
        endpoint = f"http://127.0.0.1:{port}"
        key_id, secret = _create_user(endpoint)
        yield S3Server(endpoint, key_id, secret)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
