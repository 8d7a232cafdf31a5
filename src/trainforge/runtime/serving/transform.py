"""The batch driver of a transform instance: this host's share of the input, through the local model server, into
``.out`` files (SageMaker's batch transform).

- Input (``TransformInput.DataSource.S3DataSource``): ``S3Prefix``: every object under ``S3Uri``, in key order;
  ``ManifestFile``: the manifest's ``{"prefix": ...}`` followed by keys relative to it. File ``i`` of the list goes
  to host ``i mod InstanceCount``.
- Each file is read whole (gunzipped with ``CompressionType: Gzip``) and split per ``SplitType``: ``None`` (the
  file is one record) or ``Line`` (each non-empty line is a record); ``RecordIO``/``TFRecord`` are refused.
- Records are batched per ``BatchStrategy``: ``SingleRecord`` (one per request, the default) or ``MultiRecord``
  (as many as fit ``MaxPayloadInMB``, 6 by default, joined by newlines with ``SplitType: Line``) and posted to
  ``/invocations`` with ``TransformInput.ContentType`` and ``TransformOutput.Accept``, ``MaxConcurrentTransforms``
  (1) at a time.
- The answers, in input order, go to ``<S3OutputPath>/<key relative to the input prefix>.out``, joined per
  ``AssembleWith``: ``Line`` (each answer ends with a newline) or ``None`` (concatenated).

A record the model rejects fails the instance with ``ClientError: ... <input file> ... <the model's message>``.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from trainforge.archives import gunzip
from trainforge.errors import TrainforgeError
from trainforge.storage import ObjectStore

MB = 1024 * 1024
DEFAULT_MAX_PAYLOAD_MB = 6
REQUEST_TIMEOUT_S = 70.0
MESSAGE_CHARS = 600


class TransformFailed(Exception):
    """The transform instance cannot go on; ``reason`` is its complete FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _client(message: str) -> TransformFailed:
    return TransformFailed(f"ClientError: {message}")


@dataclass(frozen=True)
class InputFile:
    """One input object and its key relative to the input prefix (which names its ``.out`` file)."""

    uri: str
    relative: str


def _split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    if not uri.startswith("s3://"):
        raise _client(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def relative_key(prefix: str, uri: str) -> str:
    """``uri``'s key relative to the input ``prefix``: below it when the prefix ends with ``/``, else below the
    prefix's last ``/`` (``s3://b/in/data`` and ``s3://b/in/data.csv`` -> ``data.csv``)."""
    base = prefix if prefix.endswith("/") else prefix[: prefix.rfind("/") + 1]
    return uri[len(base) :] if uri.startswith(base) else uri.rsplit("/", 1)[-1]


def output_uri(output_path: str, relative: str) -> str:
    """``<S3OutputPath>/<relative>.out``."""
    return f"{output_path.rstrip('/')}/{relative}.out"


def manifest_files(text: str) -> list[InputFile]:
    """The files a manifest lists: ``[{"prefix": "s3://b/p/"}, "key1", "key2", ...]``."""
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise _client(f"the manifest file is not JSON: {exc}") from None
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise _client('the manifest file must be a JSON list starting with {"prefix": "s3://bucket/prefix/"}')
    prefix = str(entries[0].get("prefix") or "")
    if not prefix.startswith("s3://"):
        raise _client('the manifest file\'s first entry must be {"prefix": "s3://bucket/prefix/"}')
    base = prefix if prefix.endswith("/") else prefix + "/"
    return [InputFile(base + str(key), str(key)) for key in entries[1:] if isinstance(key, str) and key]


def host_share(files: list[InputFile], host_index: int, host_count: int) -> list[InputFile]:
    """File ``i`` goes to host ``i mod host_count``."""
    return [f for i, f in enumerate(files) if i % max(1, host_count) == host_index]


def split_records(data: bytes, split_type: str | None) -> list[bytes]:
    """``data`` as records: the whole of it (``None``), or its non-empty lines (``Line``, without newlines)."""
    kind = split_type or "None"
    if kind == "None":
        return [data] if data else []
    if kind == "Line":
        return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]
    raise _client(f"TransformInput.SplitType {kind} is not supported here; use Line or None")


def batches(records: list[bytes], strategy: str | None, max_bytes: int, split_type: str | None) -> list[list[bytes]]:
    """Records grouped into requests: one each (``SingleRecord``), or as many as fit ``max_bytes`` together with
    their separators (``MultiRecord``; ``max_bytes`` 0: no limit). A record over ``max_bytes`` alone is an error."""
    if (strategy or "SingleRecord") == "SingleRecord":
        groups = [[record] for record in records]
    else:
        separator = 1 if (split_type or "None") == "Line" else 0
        groups = []
        current: list[bytes] = []
        size = 0
        for record in records:
            cost = len(record) + (separator if current else 0)
            if current and max_bytes and size + cost > max_bytes:
                groups.append(current)
                current, size, cost = [], 0, len(record)
            current.append(record)
            size += cost
        if current:
            groups.append(current)
    if max_bytes:
        for group in groups:
            if len(group) == 1 and len(group[0]) > max_bytes:
                raise _client(
                    f"a record of {len(group[0])} bytes is over MaxPayloadInMB ({max_bytes // MB} MB); split the input "
                    "with SplitType Line or raise MaxPayloadInMB"
                )
    return groups


def request_body(group: list[bytes], split_type: str | None) -> bytes:
    """The body of one request: the records joined by newlines (``Line``) or concatenated."""
    return (b"\n" if (split_type or "None") == "Line" else b"").join(group)


def assemble(answers: Iterable[bytes], assemble_with: str | None) -> bytes:
    """The answers in order: each ending with a newline (``Line``), or concatenated (``None``)."""
    if (assemble_with or "None") == "Line":
        return b"".join(a if a.endswith(b"\n") else a + b"\n" for a in answers)
    return b"".join(answers)


class _Connections:
    """One keep-alive connection to the model server per thread."""

    def __init__(self, address: str) -> None:
        hostport = address.split("://", 1)[-1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host, int(port)
        self._local = threading.local()

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
            try:
                conn.request("POST", "/invocations", body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class TransformDriver:
    """Runs this host's share of a CreateTransformJob ``request`` through the model server at ``address``."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        request: dict[str, Any],
        address: str,
        host_index: int,
        host_count: int,
        say: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> None:
        self.request = request
        transform_input = request.get("TransformInput") or {}
        output = request.get("TransformOutput") or {}
        self.source = (transform_input.get("DataSource") or {}).get("S3DataSource") or {}
        self.content_type = transform_input.get("ContentType")
        self.compression = transform_input.get("CompressionType") or "None"
        self.split_type = transform_input.get("SplitType") or "None"
        self.output_path = str(output.get("S3OutputPath") or "")
        self.accept = output.get("Accept")
        self.assemble_with = output.get("AssembleWith") or "None"
        self.strategy = request.get("BatchStrategy") or "SingleRecord"
        payload_mb = request.get("MaxPayloadInMB")
        self.max_bytes = int(DEFAULT_MAX_PAYLOAD_MB if payload_mb is None else payload_mb) * MB
        self.concurrency = max(1, int(request.get("MaxConcurrentTransforms") or 1))
        key_id = output.get("KmsKeyId")
        self.store = store.with_encryption(str(key_id)) if key_id else store
        self.address = address
        self.host_index = host_index
        self.host_count = host_count
        self.say = say
        self.should_stop = should_stop
        self._connections = _Connections(address)

    def inputs(self) -> list[InputFile]:
        """Every input file of the job, in order (see the module doc)."""
        uri = str(self.source.get("S3Uri") or "")
        kind = self.source.get("S3DataType") or "S3Prefix"
        try:
            if kind == "ManifestFile":
                return manifest_files(self.store.get_bytes(uri).decode("utf-8"))
            if kind != "S3Prefix":
                raise _client(f"S3DataType {kind} is not supported here; use S3Prefix or ManifestFile")
            return [InputFile(info.uri, relative_key(uri, info.uri)) for info in self.store.list(uri)]
        except TrainforgeError as exc:
            raise _client(f"cannot read the input {uri}: {exc.message}") from None

    def run(self) -> str:
        """Transform every file of this host's share; return a summary line. Returns early on a stop."""
        files = self.inputs()
        if not files:
            raise _client(f"no input objects under {self.source.get('S3Uri')}")
        share = host_share(files, self.host_index, self.host_count)
        self.say(
            f"Transforming {len(share)} of {len(files)} input file(s) on this host ({self.strategy}, "
            f"SplitType {self.split_type}, {self.concurrency} at a time)"
        )
        records = 0
        with concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="transform") as pool:
            for item in share:
                if self.should_stop():
                    return "Transform stopped"
                records += self._file(item, pool)
        return f"Transformed {records} record(s) of {len(share)} file(s) into {self.output_path}"

    def _read(self, item: InputFile) -> bytes:
        try:
            data = self.store.get_bytes(item.uri)
        except TrainforgeError as exc:
            raise _client(f"cannot read input file {item.uri}: {exc.message}") from None
        if self.compression == "Gzip":
            try:
                return gunzip(data)
            except (OSError, EOFError) as exc:
                raise _client(f"input file {item.uri} is not gzip data (CompressionType Gzip): {exc}") from None
        return data

    def _file(self, item: InputFile, pool: concurrent.futures.ThreadPoolExecutor) -> int:
        records = split_records(self._read(item), self.split_type)
        groups = batches(records, self.strategy, self.max_bytes, self.split_type)
        bodies = [request_body(group, self.split_type) for group in groups]
        answers = list(pool.map(lambda body: self._invoke(item, body), bodies))
        if self.should_stop():
            return 0  # stopped part way: no .out of the answers that were never asked for
        target = output_uri(self.output_path, item.relative)
        try:
            self.store.put_bytes(target, assemble(answers, self.assemble_with))
        except TrainforgeError as exc:
            raise _client(f"cannot write {target}: {exc.message}") from None
        self.say(f"{item.uri}: {len(records)} record(s) in {len(bodies)} request(s) -> {target}")
        return len(records)

    def _invoke(self, item: InputFile, body: bytes) -> bytes:
        if self.should_stop():
            return b""
        headers = {"Content-Type": str(self.content_type or "application/octet-stream")}
        if self.accept:
            headers["Accept"] = str(self.accept)
        try:
            status, answer = self._connections.post(body, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise _client(f"the model server did not answer for input file {item.uri}: {exc}") from None
        if status != 200:
            message = answer.decode("utf-8", "replace").strip()[:MESSAGE_CHARS]
            raise _client(
                f"the model answered {status} for a record of input file {item.uri}; see the job's log. "
                f"The model's message: {message}"
            )
        return answer
