"""Serializers and deserializers behave as SageMaker's (``sagemaker.serializers`` / ``sagemaker.deserializers``);
framework predictors carry SageMaker's defaults."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from tests.unit.test_sdk_request import offline_session
from trainforge.deserializers import (
    BytesDeserializer,
    CSVDeserializer,
    JSONDeserializer,
    JSONLinesDeserializer,
    NumpyDeserializer,
    PandasDeserializer,
    StreamDeserializer,
    StringDeserializer,
)
from trainforge.errors import ValidationError
from trainforge.predictor import Predictor
from trainforge.pytorch import PyTorchPredictor
from trainforge.serializers import (
    CSVSerializer,
    DataSerializer,
    IdentitySerializer,
    JSONLinesSerializer,
    JSONSerializer,
    LibSVMSerializer,
    NumpySerializer,
    StringSerializer,
)
from trainforge.sklearn import SKLearnPredictor
from trainforge.xgboost import XGBoostPredictor


def stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def test_csv_serializer_writes_one_row_per_line() -> None:
    csv = CSVSerializer()
    assert csv.CONTENT_TYPE == "text/csv"
    assert csv.serialize([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]) == "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3"
    assert csv.serialize([1, 2, 3]) == "1,2,3"
    assert csv.serialize(np.array([[1, 2], [3, 4]])) == "1,2\n3,4"
    assert csv.serialize(np.array([1.5, 2.5])) == "1.5,2.5"
    assert csv.serialize(["a,b", "c,d"]) == "a,b\nc,d"
    assert csv.serialize("1,2\n3,4") == "1,2\n3,4"
    assert csv.serialize(io.StringIO("x,y")) == "x,y"
    assert csv.serialize(pd.DataFrame({"a": [1, 2], "b": [3, 4]})) == "1,3\n2,4\n"
    with pytest.raises(ValueError, match="empty"):
        csv.serialize([])
    with pytest.raises(ValueError, match="Unable to handle input format"):
        csv.serialize(3)


def test_json_numpy_identity_string_and_data_serializers(tmp_path: Path) -> None:
    assert JSONSerializer().CONTENT_TYPE == "application/json"
    assert json.loads(JSONSerializer().serialize({"x": np.array([1, 2]), "y": 3})) == {"x": [1, 2], "y": 3}
    assert JSONSerializer().serialize(np.array([[1, 2]])) == "[[1, 2]]"
    assert JSONSerializer().serialize([1, "a"]) == '[1, "a"]'

    npy = NumpySerializer()
    assert npy.CONTENT_TYPE == "application/x-npy"
    back = np.load(io.BytesIO(npy.serialize([[1.0, 2.0], [3.0, 4.0]])))
    assert back.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert np.load(io.BytesIO(NumpySerializer(dtype="float32").serialize([1, 2]))).dtype == np.float32
    with pytest.raises(ValueError):
        npy.serialize(np.array([]))
    with pytest.raises(ValueError):
        npy.serialize([])

    assert IdentitySerializer().CONTENT_TYPE == "application/octet-stream"
    assert IdentitySerializer("text/csv").serialize(b"1,2") == b"1,2"
    assert StringSerializer().serialize("hi") == "hi" and StringSerializer().CONTENT_TYPE == "text/plain"
    with pytest.raises(ValueError):
        StringSerializer().serialize(b"hi")
    path = tmp_path / "img.bin"
    path.write_bytes(b"\x00\x01")
    assert DataSerializer().serialize(str(path)) == b"\x00\x01"
    assert DataSerializer().serialize(b"raw") == b"raw"
    with pytest.raises(ValueError):
        DataSerializer().serialize(12)


def test_jsonlines_and_libsvm() -> None:
    body = JSONLinesSerializer().serialize([{"a": 1}, {"b": [1, 2]}])
    assert body == '{"a": 1}\n{"b": [1, 2]}'
    assert JSONLinesDeserializer().deserialize(stream(body.encode() + b"\n"), "application/jsonlines") == [
        {"a": 1},
        {"b": [1, 2]},
    ]
    matrix = scipy.sparse.csr_matrix(np.array([[1.0, 0.0, 3.5], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    assert LibSVMSerializer().serialize(matrix) == "0 0:1 2:3.5\n0\n0 1:2\n"
    assert LibSVMSerializer().serialize("1 0:2\n") == "1 0:2\n"
    assert LibSVMSerializer().CONTENT_TYPE == "text/libsvm"
    with pytest.raises(ValueError, match="Unable to handle input format"):
        LibSVMSerializer().serialize([[1, 2]])


def test_deserializers() -> None:
    assert BytesDeserializer().deserialize(stream(b"abc"), "application/octet-stream") == b"abc"
    assert BytesDeserializer().ACCEPT == "*/*"
    assert StringDeserializer().deserialize(stream("é".encode()), "text/plain") == "é"
    assert CSVDeserializer().ACCEPT == "text/csv"
    assert CSVDeserializer().deserialize(stream(b"0.1,0.2\n1,2\n"), "text/csv") == [["0.1", "0.2"], ["1", "2"]]
    assert JSONDeserializer().deserialize(stream(b'{"a": [1]}'), "application/json") == {"a": [1]}
    body, content_type = StreamDeserializer().deserialize(stream(b"x"), "text/plain")
    assert body.read() == b"x" and content_type == "text/plain"

    numpy = NumpyDeserializer()
    assert numpy.ACCEPT == "application/x-npy"
    assert numpy.deserialize(stream(b"1,2\n3,4\n"), "text/csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert numpy.deserialize(stream(b"[1, 2]"), "application/json; charset=utf-8").tolist() == [1, 2]
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    assert numpy.deserialize(stream(buffer.getvalue()), "application/x-npy").tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot read content type text/plain"):
        numpy.deserialize(stream(b"x"), "text/plain")

    frame = PandasDeserializer().deserialize(stream(b"a,b\n1,2\n"), "text/csv")
    assert frame.to_dict("list") == {"a": [1], "b": [2]}
    assert PandasDeserializer().ACCEPT == ("text/csv", "application/json")
    with pytest.raises(ValueError):
        PandasDeserializer().deserialize(stream(b""), "text/plain")


def test_predictors_carry_sagemakers_defaults(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    plain = Predictor("ep", session)
    assert isinstance(plain.serializer, IdentitySerializer) and isinstance(plain.deserializer, BytesDeserializer)
    assert (plain.content_type, plain.accept) == ("application/octet-stream", "*/*")
    sk = SKLearnPredictor("ep", session)
    assert isinstance(sk.serializer, NumpySerializer) and isinstance(sk.deserializer, NumpyDeserializer)
    torch = PyTorchPredictor("ep", session)
    assert isinstance(torch.serializer, NumpySerializer) and isinstance(torch.deserializer, NumpyDeserializer)
    xgb = XGBoostPredictor("ep", session)
    assert isinstance(xgb.serializer, LibSVMSerializer) and isinstance(xgb.deserializer, CSVDeserializer)
    xgb.serializer = CSVSerializer()
    args = xgb._create_request_args([[1, 2], [3, 4]], None, None, None, None)
    assert args == {"EndpointName": "ep", "ContentType": "text/csv", "Accept": "text/csv", "Body": "1,2\n3,4"}
    pandas = Predictor("ep", session, deserializer=PandasDeserializer())
    overridden = pandas._create_request_args(b"x", {"Accept": "application/json"}, "m.tar.gz", None, None)
    assert overridden["Accept"] == "application/json" and overridden["TargetModel"] == "m.tar.gz"
    assert pandas._create_request_args(b"x", None, None, None, None)["Accept"] == "text/csv, application/json"


def test_update_endpoint_needs_both_count_and_type_before_asking_the_server(tmp_path: Path) -> None:
    predictor = Predictor("ep", offline_session(tmp_path))
    with pytest.raises(ValidationError, match="initial_instance_count, instance_type") as missing:
        predictor.update_endpoint(instance_type="ml.m5.large")
    assert missing.value.field == "initial_instance_count"
    with pytest.raises(ValidationError) as no_type:
        predictor.update_endpoint(model_name="other", initial_instance_count=1)
    assert no_type.value.field == "instance_type"
