"""``python -m trainforge_serving --framework sklearn|xgboost|xgboost-algorithm|pytorch|generic [--port P]``.

Reads the contract's environment: ``SAGEMAKER_PROGRAM`` (the inference script, if any) in
``SAGEMAKER_SUBMIT_DIRECTORY`` (its directory; ``SM_MODEL_DIR/code`` by default), ``SM_MODEL_DIR``
(``/opt/ml/model``), ``SAGEMAKER_BIND_TO_PORT`` (8080; ``--port`` wins), ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (60 s),
``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6), ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, ``SAGEMAKER_MODEL_SERVER_WORKERS``
(request threads, 16) and ``SAGEMAKER_CONTAINER_LOG_LEVEL`` (10 or lower: one log line per request). Loads the model,
then listens; a model that cannot be loaded ends the process with exit code 1 and the reason on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType

from . import codecs
from .errors import HandlerConfigError
from .frameworks import FRAMEWORKS, defaults_for
from .handlers import Context, Transformer, load_user_module
from .server import MB, ModelServer


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        print(f"[trainforge-serving] {name}={raw!r} is not a number; using {default:g}", file=sys.stderr)
        return default


def build_transformer(framework: str, model_dir: str) -> Transformer:
    """The handlers of ``framework`` with the inference script's (see the module doc), model not yet loaded."""
    defaults = defaults_for(framework)
    accept = codecs.media_type(os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"))
    if accept and framework != "xgboost-algorithm":
        defaults = dataclasses.replace(defaults, default_accept=accept)
    program = os.environ.get("SAGEMAKER_PROGRAM") or None
    code_dir = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY") or str(Path(model_dir) / "code")
    if code_dir.startswith("s3://"):
        code_dir = str(Path(model_dir) / "code")
    module = load_user_module(code_dir, program)
    context = Context(model_dir=model_dir, system_properties={"model_dir": model_dir, "gpu_id": 0})
    return Transformer(module, defaults, context)


def main(argv: list[str] | None = None) -> int:
    """Load the model and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m trainforge_serving")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="generic")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--host", default=os.environ.get("SAGEMAKER_BIND_TO_HOST", "127.0.0.1"))
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else int(_number("SAGEMAKER_BIND_TO_PORT", 8080))
    model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
    program = os.environ.get("SAGEMAKER_PROGRAM") or "(none)"
    print(f"[trainforge-serving] framework {args.framework}, model {model_dir}, script {program}", flush=True)
    try:
        transformer = build_transformer(args.framework, model_dir)
        transformer.load()
    except HandlerConfigError as exc:
        print(f"[trainforge-serving] cannot load the model: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        traceback.print_exc()
        print(f"[trainforge-serving] cannot load the model: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    level = int(_number("SAGEMAKER_CONTAINER_LOG_LEVEL", 20))
    server = ModelServer(
        (args.host, port),
        transformer,
        max_payload_bytes=int(_number("SAGEMAKER_MAX_PAYLOAD_IN_MB", 6) * MB),
        timeout_s=_number("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60),
        workers=max(1, int(_number("SAGEMAKER_MODEL_SERVER_WORKERS", 16))),
        access_log=level <= 10,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"[trainforge-serving] model loaded; listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    print("[trainforge-serving] stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
