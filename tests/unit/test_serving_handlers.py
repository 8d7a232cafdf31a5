"""The model server's handler resolution, codecs and error mapping, run in-process (``trainforge_serving`` is
imported from ``image_files`` as a serving process imports it)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from trainforge.runtime.builtin import IMAGE_FILES

if str(IMAGE_FILES) not in sys.path:
    sys.path.insert(0, str(IMAGE_FILES))

from trainforge_serving import codecs, frameworks, xgboost_algorithm
from trainforge_serving.errors import HandlerConfigError, InferenceError, UnsupportedContentType
from trainforge_serving.handlers import Context, Transformer, call_handler, load_user_module


def module(**handlers: Any) -> ModuleType:
    """A user module defining ``handlers``."""
    mod = ModuleType("inference")
    for name, fn in handlers.items():
        setattr(mod, name, fn)
    return mod


def transformer(mod: ModuleType | None, framework: str = "generic", model_dir: str = "/opt/ml/model") -> Transformer:
    t = Transformer(mod, frameworks.defaults_for(framework), Context(model_dir=model_dir))
    t.load()
    return t


# ----------------------------------------------------------------------------------- resolution


def test_arity_decides_whether_context_is_passed() -> None:
    seen: dict[str, Any] = {}

    def model_fn(model_dir: str, context: Context) -> str:
        seen["model_fn"] = context.model_dir
        return "M"

    def input_fn(data: str, content_type: str, context: Context) -> Any:
        seen["header"] = context.get_request_header(0, "X-Test")
        return json.loads(data)

    def predict_fn(data: Any, model: str) -> Any:
        return {"model": model, "sum": sum(data)}

    def output_fn(prediction: Any, accept: str) -> str:
        return json.dumps(prediction)

    t = transformer(module(model_fn=model_fn, input_fn=input_fn, predict_fn=predict_fn, output_fn=output_fn))
    t.context.set_headers({"X-Test": "hello"})
    answer = t.invoke(b"[1, 2, 3]", "application/json", None)
    assert answer.status == 200
    assert json.loads(answer.body) == {"model": "M", "sum": 6}
    assert answer.content_type == "application/json"
    assert seen == {"model_fn": "/opt/ml/model", "header": "hello"}


def test_a_handler_with_the_wrong_arity_is_a_type_error_naming_it() -> None:
    def predict_fn(a: Any, b: Any, c: Any, d: Any) -> Any:
        return None

    with pytest.raises(TypeError, match="predict_fn takes 4 arguments but 2 were given"):
        call_handler(predict_fn, (1, 2), Context(model_dir="/m"))


def test_transform_fn_cannot_be_combined_with_input_predict_output_fn() -> None:
    def transform_fn(model: Any, data: Any, content_type: str, accept: str) -> str:
        return "x"

    with pytest.raises(HandlerConfigError, match="transform_fn cannot be used together with input_fn, output_fn"):
        Transformer(
            module(transform_fn=transform_fn, input_fn=lambda d, c: d, output_fn=lambda p, a: p),
            frameworks.defaults_for("generic"),
            Context(model_dir="/m"),
        )


def test_transform_fn_answers_alone_and_may_name_the_content_type() -> None:
    calls: list[tuple[Any, ...]] = []

    def transform_fn(model: Any, data: Any, content_type: str, accept: str, context: Context) -> tuple[bytes, str]:
        calls.append((model, data, content_type, accept))
        return b"<ok/>", "application/xml"

    t = transformer(module(model_fn=lambda d: "M", transform_fn=transform_fn))
    answer = t.invoke(b"a,b", "text/csv; charset=utf-8", "*/*")
    assert (answer.status, answer.body, answer.content_type) == (200, b"<ok/>", "application/xml")
    assert calls == [("M", "a,b", "text/csv", "application/json")]  # UTF-8 types arrive decoded; */* -> default


def test_pre_model_fn_and_model_warmup_fn_run_around_model_fn() -> None:
    order: list[str] = []
    mod = module(
        pre_model_fn=lambda d: order.append("pre"),
        model_fn=lambda d: order.append("model") or "M",
        model_warmup_fn=lambda d, m: order.append(f"warmup:{m}"),
        predict_fn=lambda data, model: data,
    )
    transformer(mod)
    assert order == ["pre", "model", "warmup:M"]


def test_output_fn_may_return_an_array_encoded_for_accept() -> None:
    t = transformer(module(model_fn=lambda d: None, predict_fn=lambda data, m: data * 2, output_fn=lambda p, a: p))
    answer = t.invoke(b"1,2\n3,4\n", "text/csv", "text/csv")
    assert answer.body.decode().split() == ["2.0,4.0", "6.0,8.0"]


def test_load_user_module_names_a_missing_program(tmp_path: Path) -> None:
    with pytest.raises(HandlerConfigError, match=r"'predict\.py' was not found in"):
        load_user_module(str(tmp_path), "predict.py")
    assert load_user_module(str(tmp_path), None) is None


# ----------------------------------------------------------------------------------- errors


def test_a_user_handler_that_raises_is_a_500_with_its_message_and_traceback() -> None:
    def predict_fn(data: Any, model: Any) -> Any:
        raise ValueError("features must be positive")

    answer = transformer(module(model_fn=lambda d: None, predict_fn=predict_fn)).invoke(
        b"[1]", "application/json", None
    )
    text = answer.body.decode()
    assert answer.status == 500
    assert text.startswith("features must be positive\nTraceback (most recent call last):")
    assert "in predict_fn" in text


def test_an_error_carrying_a_status_code_is_answered_with_it() -> None:
    class ToolkitError(Exception):
        def __init__(self, status_code: int, message: str) -> None:
            super().__init__(message)
            self.status_code = status_code
            self.message = message

    def input_fn(data: Any, content_type: str) -> Any:
        raise ToolkitError(422, "missing field 'age'")

    answer = transformer(module(model_fn=lambda d: None, input_fn=input_fn, predict_fn=lambda d, m: d)).invoke(
        b"{}", "application/json", None
    )
    assert answer.status == 422
    assert answer.body.decode().startswith("missing field 'age'\n")


def test_an_unsupported_content_type_is_a_415_naming_it_and_the_supported_ones() -> None:
    t = transformer(module(model_fn=lambda d: None, predict_fn=lambda d, m: d))
    answer = t.invoke(b"<x/>", "application/xml", None)
    assert answer.status == 415
    message = answer.body.decode()
    assert "application/xml" in message
    for supported in ("application/json", "text/csv", "application/x-npy", "application/x-npz"):
        assert supported in message
    assert t.invoke(b"[1]", "application/json", "text/html").status == 415  # an Accept no encoder handles


def test_framework_defaults_ask_for_model_fn() -> None:
    with pytest.raises(HandlerConfigError, match="PyTorch models need a model_fn"):
        transformer(None, "pytorch")
    with pytest.raises(HandlerConfigError, match="model_fn is required"):
        transformer(None, "generic")


# ----------------------------------------------------------------------------------- codecs


def test_decoders_turn_json_csv_npy_npz_into_arrays() -> None:
    assert codecs.decode("[[1, 2], [3, 4]]", "application/json").tolist() == [[1, 2], [3, 4]]
    assert codecs.decode("1,2\n3,4", "text/csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6).reshape(2, 3))
    assert codecs.decode(buffer.getvalue(), "application/x-npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    buffer = io.BytesIO()
    np.savez(buffer, np.ones(3))
    assert codecs.decode(buffer.getvalue(), "application/x-npz").tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(UnsupportedContentType):
        codecs.decode(b"x", "image/png")


def test_encoders_round_trip_through_the_decoders() -> None:
    array = np.array([[1.5, 2.0], [3.0, 4.25]])
    for kind in ("application/json", "text/csv", "application/x-npy"):
        body = codecs.encode(array, kind)
        data: bytes | str = body.decode() if kind in codecs.UTF8_TYPES else body
        assert codecs.decode(data, kind).tolist() == array.tolist()
    assert json.loads(codecs.encode({"a": np.float32(1.5)}, "application/json")) == {"a": 1.5}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("*/*, text/csv;q=0.5", "text/csv"),
        ("Application/X-NPY", "application/x-npy"),
    ],
)
def test_accept_resolution(header: str | None, expected: str) -> None:
    assert codecs.resolve_accept(header, "application/json") == expected


# ----------------------------------------------------------------------------------- framework defaults


def test_sklearn_model_fn_loads_the_only_model_file_and_refuses_ambiguity(tmp_path: Path) -> None:
    import joblib

    joblib.dump({"w": 1}, tmp_path / "estimator.pkl")
    assert frameworks.sklearn_model_fn(str(tmp_path)) == {"w": 1}
    joblib.dump({"w": 2}, tmp_path / "other.pkl")
    with pytest.raises(HandlerConfigError, match=r"several \*\.pkl files \(estimator\.pkl, other\.pkl\)"):
        frameworks.sklearn_model_fn(str(tmp_path))
    joblib.dump({"w": 3}, tmp_path / "model.joblib")
    assert frameworks.sklearn_model_fn(str(tmp_path)) == {"w": 3}  # model.joblib wins
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HandlerConfigError, match=r"only model\.joblib, \*\.joblib or \*\.pkl file"):
        frameworks.sklearn_model_fn(str(empty))


def test_sklearn_input_fn_makes_float32_rows() -> None:
    one = frameworks.sklearn_input_fn("1,2,3", "text/csv")
    assert one.dtype == np.float32 and one.shape == (1, 3)
    assert frameworks.sklearn_input_fn("[[1, 2]]", "application/json").dtype == np.float32


# ----------------------------------------------------------------------------------- built-in XGBoost (no xgboost)


def test_xgboost_algorithm_parses_csv_with_a_sniffed_delimiter_and_libsvm() -> None:
    rows = xgboost_algorithm.csv_rows("1\t2\t\n3\t4\t5\n")
    assert rows.shape == (2, 3) and np.isnan(rows[0, 2])
    with pytest.raises(InferenceError, match="CSV line 2 is not numeric"):
        xgboost_algorithm.csv_rows("1,2\na,b\n")
    dense = xgboost_algorithm.libsvm_rows("1 0:1.5 3:2\n0:4\n", num_features=5)
    assert dense.shape == (2, 5)
    assert dense[0, 0] == 1.5 and dense[0, 3] == 2 and np.isnan(dense[0, 1]) and dense[1, 0] == 4


def test_xgboost_algorithm_encodes_scores_per_accept() -> None:
    scores = np.array([0.25, 0.75])
    assert xgboost_algorithm.encode_scores(scores, "text/csv") == b"0.25\n0.75\n"
    assert json.loads(xgboost_algorithm.encode_scores(scores, "application/json")) == {
        "predictions": [{"score": 0.25}, {"score": 0.75}]
    }
    assert xgboost_algorithm.encode_scores(scores, "application/jsonlines") == b'{"score": 0.25}\n{"score": 0.75}\n'
    records = [{"predicted_label": 1, "probabilities": [0.25, 0.75]}]
    assert xgboost_algorithm.encode_records(records, "text/csv") == b'1,"[0.25, 0.75]"\n'
    with pytest.raises(UnsupportedContentType):
        xgboost_algorithm.encode_scores(scores, "application/x-npy")
