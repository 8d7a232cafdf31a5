"""Latency of one prediction of a tiny scikit-learn model: through the server, straight to the model server, and
in-process, in one run.

Starts a private server (its own TRAINFORGE_HOME), deploys a ``LinearRegression`` (4 features) on an endpoint of
image ``trainforge/python:current`` (the server's own interpreter: no environment build) with an inference script,
then times N requests of one JSON row each:

(a) ``Predictor.predict()`` -> ``POST /v1/endpoints/{name}/invocations`` on the server -> the serving process;
(b) the same request straight to the serving process's address (one keep-alive connection);
(c) ``model.predict()`` in this process;

and, to tell where the server's time goes: (d) the invocation through the server from a bare keep-alive
``http.client`` connection (no SDK on the client side), (e) ``GET /health`` on the server the same way (the
server's floor for any request).

Prints p50/p99 (ms) of each and the server's added p50 (a - b) as JSON. Target: the server adds <= 2 ms at p50.

    python bench/invoke_latency.py [--requests 1000] [--warmup 100]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.linear_model import LinearRegression

SCRIPT = """
import os
import joblib
import numpy as np

def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))

def predict_fn(data, model):
    return model.predict(np.asarray(data, dtype=np.float64).reshape(-1, 4))
"""
ROW = [[5.1, 3.5, 1.4, 0.2]]


class KeepAlive:
    """One keep-alive connection, opened again when the server closed it while idle."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def fetch(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body or None, headers=headers)
                return self.conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99 (and mean) of seconds, in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def timed(call: Callable[[], Any], count: int, warmup: int) -> list[float]:
    """Seconds per call of ``count`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def model_archive(model: LinearRegression, directory: Path) -> Path:
    """``model.tar.gz`` with ``model.joblib`` and ``code/inference.py`` (a repacked model)."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    path = directory / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("model.joblib", buffer.getvalue()), ("code/inference.py", SCRIPT.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def wait_in_service(client: Any, name: str, timeout: float = 300) -> dict[str, Any]:
    from trainforge import inference_client

    deadline = time.monotonic() + timeout
    while True:
        described = inference_client.describe_endpoint(client, name)
        if described["EndpointStatus"] == "InService":
            return described
        if described["EndpointStatus"] == "Failed" or time.monotonic() > deadline:
            raise SystemExit(f"endpoint {name} is {described['EndpointStatus']}: {described.get('FailureReason')}")
        time.sleep(0.2)


def delete_and_wait(client: Any, name: str, home: Path, timeout: float = 120) -> None:
    """Delete the endpoint and wait until its supervisor has ended (``result.json``), so nothing outlives the
    server (a supervisor whose server is gone keeps trying to report its end)."""
    from trainforge import inference_client
    from trainforge.errors import TrainforgeError

    try:
        inference_client.delete_endpoint(client, name)
    except TrainforgeError:
        return
    deadline = time.monotonic() + timeout
    roots = list((home / "jobs").glob(f"endpoint.{name}*/algo-*"))
    while time.monotonic() < deadline and not all((root / "result.json").exists() for root in roots):
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tf-bench-"))
    os.environ["TRAINFORGE_HOME"] = str(home)

    import trainforge
    from trainforge import inference_client
    from trainforge.deserializers import JSONDeserializer
    from trainforge.local_server import stop_server
    from trainforge.predictor import Predictor
    from trainforge.serializers import JSONSerializer
    from trainforge.settings import load_settings

    rng = np.random.default_rng(0)
    features = rng.random((100, 4))
    model = LinearRegression().fit(features, features @ np.array([1.0, 2.0, 3.0, 4.0]))

    settings = load_settings()
    session = trainforge.Session(settings=settings)  # starts the server (not timed)
    client = session.client
    name = "bench-invoke"
    try:
        uri = session.upload_data(model_archive(model, home), key_prefix="bench-invoke")
        inference_client.create_model(
            client,
            {
                "ModelName": name,
                "ExecutionRoleArn": trainforge.get_execution_role(),
                "PrimaryContainer": {
                    "Image": "trainforge/python:current",
                    "ModelDataUrl": uri,
                    "Environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    },
                },
            },
        )
        variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        variant["InstanceType"] = "ml.m5.large"
        inference_client.create_endpoint_config(client, {"EndpointConfigName": name, "ProductionVariants": [variant]})
        started = time.perf_counter()
        inference_client.create_endpoint(client, {"EndpointName": name, "EndpointConfigName": name})
        described = wait_in_service(client, name)
        deploy_s = time.perf_counter() - started
        address = described["Instances"][0]["Address"]

        predictor = Predictor(
            name, sagemaker_session=session, serializer=JSONSerializer(), deserializer=JSONDeserializer()
        )
        expected = model.predict(np.array(ROW)).tolist()
        assert np.allclose(predictor.predict(ROW), expected)

        hostport = address.split("://", 1)[1]
        host, port = hostport.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        body = json.dumps(ROW).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}

        def direct() -> Any:
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            return json.loads(response.read())

        assert np.allclose(direct(), expected)
        server_host, server_port = str(client.base_url).split("://", 1)[1].rstrip("/").rsplit(":", 1)
        server_conn = KeepAlive(server_host, int(server_port))
        auth = {"Authorization": client._http.headers["Authorization"]}

        def raw_server() -> Any:
            path = f"/v1/endpoints/{name}/invocations"
            return json.loads(server_conn.fetch("POST", path, body, {**headers, **auth}))

        def health() -> Any:
            return server_conn.fetch("GET", "/health", b"", {})

        assert np.allclose(raw_server(), expected)
        through_server = timed(lambda: predictor.predict(ROW), args.requests, args.warmup)
        straight = timed(direct, args.requests, args.warmup)
        in_process = timed(lambda: model.predict(np.array(ROW)), args.requests, args.warmup)
        bare_through_server = timed(raw_server, args.requests, args.warmup)
        server_health = timed(health, args.requests, args.warmup)
        conn.close()
        server_conn.close()
    finally:
        delete_and_wait(client, name, home)
        stop_server(settings)

    a, b, c = percentiles(through_server), percentiles(straight), percentiles(in_process)
    added = round(a["p50_ms"] - b["p50_ms"], 3)
    print(
        json.dumps(
            {
                "requests": args.requests,
                "deploy_to_in_service_s": round(deploy_s, 2),
                "a_predictor_through_server": a,
                "b_straight_to_serving_process": b,
                "c_model_in_process": c,
                "d_bare_http_through_server": percentiles(bare_through_server),
                "e_server_health_get": percentiles(server_health),
                "server_added_p50_ms": added,
                "serving_process_added_p50_ms": round(b["p50_ms"] - c["p50_ms"], 3),
                "target_server_added_p50_ms": 2.0,
                "target_met": added <= 2.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
