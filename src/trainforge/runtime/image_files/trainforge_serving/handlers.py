"""Handler resolution exactly as the inference toolkit's ``Transformer`` does it (reference §7.3).

The user module (``SAGEMAKER_PROGRAM`` in ``SAGEMAKER_SUBMIT_DIRECTORY``) may define ``model_fn(model_dir[,
context])``, ``input_fn(input_data, content_type[, context])``, ``predict_fn(data, model[, context])``,
``output_fn(prediction, accept[, context])``, or instead of the last three ``transform_fn(model, data,
content_type, accept[, context])`` (defining both is an error when the server starts), plus ``pre_model_fn(model_dir)``
and ``model_warmup_fn(model_dir, model)``. Each handler it does not define is the framework's default
(:mod:`trainforge_serving.frameworks`). A handler taking one parameter more than it is given gets the
:class:`Context` as its last argument. ``output_fn`` (or ``transform_fn``) may return the body, or ``(body,
content_type)``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from . import codecs
from .errors import HandlerConfigError, InferenceError, status_of

Handler = Callable[..., Any]


@dataclass
class Context:
    """What a handler taking ``context`` gets: the model directory, the request's headers (of the request being
    handled by this thread) and ``system_properties`` like the model server's (``model_dir``, ``gpu_id``)."""

    model_dir: str
    system_properties: dict[str, Any] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def request_headers(self) -> dict[str, str]:
        """The headers of the request this thread handles (lower-case names)."""
        return dict(getattr(self._local, "headers", {}))

    def get_request_header(self, idx: int, key: str) -> str | None:
        """One header of the request (``idx`` is the batch index of the model server's API; always 0 here)."""
        return self.request_headers.get(key.lower())

    def set_headers(self, headers: dict[str, str]) -> None:
        """Record the headers of the request this thread now handles."""
        self._local.headers = {k.lower(): v for k, v in headers.items()}


@dataclass(frozen=True)
class Defaults:
    """A framework's default handlers; ``default_accept`` is the answer type when the request names none,
    ``default_content_type`` the request type assumed when it has no ``Content-Type``."""

    model_fn: Handler
    input_fn: Handler
    predict_fn: Handler
    output_fn: Handler
    transform_fn: Handler | None = None
    default_accept: str = codecs.JSON
    default_content_type: str = codecs.JSON


@dataclass(frozen=True)
class Answer:
    """One answer: status, body and content type."""

    status: int
    body: bytes
    content_type: str


def load_user_module(code_dir: str | None, program: str | None) -> ModuleType | None:
    """Import the inference script ``program`` (``inference.py`` or a module name) from ``code_dir`` (put first
    on ``sys.path``); None without a program. An import error propagates (the server fails to start)."""
    if not program:
        return None
    if code_dir and code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    name = program[:-3] if program.endswith(".py") else program
    if code_dir and not (Path(code_dir) / f"{name}.py").is_file() and not (Path(code_dir) / name).is_dir():
        raise HandlerConfigError(f"SAGEMAKER_PROGRAM {program!r} was not found in {code_dir}")
    return importlib.import_module(name)


def call_handler(func: Handler, args: tuple[Any, ...], context: Context) -> Any:
    """Call ``func`` with ``args``, adding ``context`` when it takes exactly one parameter more (the toolkit's
    ``_run_handler_function``); a ``TypeError`` naming the handler for any other arity."""
    try:
        count = len(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return func(*args)
    if count == len(args):
        return func(*args)
    if count == len(args) + 1:
        return func(*args, context)
    name = getattr(func, "__name__", repr(func))
    raise TypeError(f"{name} takes {count} arguments but {len(args)} were given (or {len(args) + 1} with context)")


class Transformer:
    """The resolved handlers of one model, and the request path through them.

    Raises :class:`HandlerConfigError` when the module defines ``transform_fn`` together with ``input_fn``,
    ``predict_fn`` or ``output_fn``.
    """

    def __init__(self, module: ModuleType | None, defaults: Defaults, context: Context) -> None:
        self.context = context
        self.defaults = defaults
        user: dict[str, Handler] = {}
        names = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn", "pre_model_fn", "model_warmup_fn")
        for name in names:
            value = getattr(module, name, None) if module is not None else None
            if callable(value):
                user[name] = value
        if "transform_fn" in user:
            clash = [n for n in ("input_fn", "predict_fn", "output_fn") if n in user]
            if clash:
                raise HandlerConfigError(
                    f"transform_fn cannot be used together with {', '.join(clash)}: define either transform_fn, "
                    "or input_fn/predict_fn/output_fn"
                )
        self.user = user
        self.model_fn = user.get("model_fn", defaults.model_fn)
        self.input_fn = user.get("input_fn", defaults.input_fn)
        self.predict_fn = user.get("predict_fn", defaults.predict_fn)
        self.output_fn = user.get("output_fn", defaults.output_fn)
        self.transform_fn: Handler = user.get("transform_fn") or defaults.transform_fn or self._default_transform_fn
        self.model: Any = None
        self.loaded = False

    def load(self) -> None:
        """``pre_model_fn``, ``model_fn``, then ``model_warmup_fn`` (each when defined); errors propagate."""
        model_dir = self.context.model_dir
        if "pre_model_fn" in self.user:
            call_handler(self.user["pre_model_fn"], (model_dir,), self.context)
        self.model = call_handler(self.model_fn, (model_dir,), self.context)
        if "model_warmup_fn" in self.user:
            call_handler(self.user["model_warmup_fn"], (model_dir, self.model), self.context)
        self.loaded = True

    def _default_transform_fn(self, model: Any, data: Any, content_type: str, accept: str) -> Any:
        decoded = call_handler(self.input_fn, (data, content_type), self.context)
        prediction = call_handler(self.predict_fn, (decoded, model), self.context)
        return call_handler(self.output_fn, (prediction, accept), self.context)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Answer:
        """Answer one request: the handlers' result as bytes, or the error as the toolkit answers it."""
        ctype = codecs.media_type(content_type) or self.defaults.default_content_type
        answer_type = codecs.resolve_accept(accept, self.defaults.default_accept)
        try:
            data: Any = body
            if ctype in codecs.UTF8_TYPES:
                try:
                    data = codecs.as_text(body)
                except UnicodeDecodeError as exc:
                    raise InferenceError(400, f"The {ctype} request body is not UTF-8 text: {exc}") from None
            result = call_handler(self.transform_fn, (self.model, data, ctype, answer_type), self.context)
            return self._answer(result, answer_type)
        except InferenceError as exc:
            return Answer(exc.status_code, exc.message.encode("utf-8"), "text/plain; charset=utf-8")
        except Exception as exc:  # the user's handler failed: its message and traceback, as the toolkit answers
            status = status_of(exc) or 500
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            text = f"{message}\n{traceback.format_exc()}"
            return Answer(status, text.encode("utf-8"), "text/plain; charset=utf-8")

    def _answer(self, result: Any, answer_type: str) -> Answer:
        content_type = answer_type
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result[0], str(result[1])
        if isinstance(result, (list, tuple)) and len(result) == 1 and isinstance(result[0], (bytes, str)):
            result = result[0]  # the toolkit's handlers may answer a one-element batch
        if isinstance(result, str):
            body = result.encode("utf-8")
        elif isinstance(result, (bytes, bytearray, memoryview)):
            body = bytes(result)
        elif result is None:
            body = b""
        else:
            body = codecs.encode(result, content_type)
        return Answer(200, body, content_type)
