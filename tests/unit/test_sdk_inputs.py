"""``TrainingInput.config`` (reference §5.4) and how ``fit()`` inputs become channels."""

from __future__ import annotations

import pytest

from trainforge.errors import ValidationError
from trainforge.inputs import ShuffleConfig, TrainingInput
from trainforge.job import format_inputs_to_input_config, normalize_logs
from trainforge.session import TrainingInput as SessionTrainingInput
from trainforge.session import s3_input


def test_minimal_config() -> None:
    assert TrainingInput("s3://b/p/").config == {
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": "s3://b/p/",
                "S3DataDistributionType": "FullyReplicated",
            }
        }
    }


def test_every_option() -> None:
    config = TrainingInput(
        "s3://b/manifest",
        distribution="ShardedByS3Key",
        compression="Gzip",
        content_type="text/csv",
        record_wrapping="RecordIO",
        s3_data_type="ManifestFile",
        instance_groups=["g1"],
        input_mode="Pipe",
        attribute_names=["source-ref"],
        shuffle_config=ShuffleConfig(7),
    ).config
    assert config == {
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "ManifestFile",
                "S3Uri": "s3://b/manifest",
                "S3DataDistributionType": "ShardedByS3Key",
                "AttributeNames": ["source-ref"],
                "InstanceGroupNames": ["g1"],
            }
        },
        "CompressionType": "Gzip",
        "ContentType": "text/csv",
        "RecordWrapperType": "RecordIO",
        "InputMode": "Pipe",
        "ShuffleConfig": {"Seed": 7},
    }


def test_target_attribute_name_drops_the_default_distribution() -> None:
    config = TrainingInput("s3://b/p", target_attribute_name="label").config
    assert "S3DataDistributionType" not in config["DataSource"]["S3DataSource"]
    assert config["TargetAttributeName"] == "label"


def test_session_re_exports_training_input() -> None:
    assert SessionTrainingInput is TrainingInput and s3_input is TrainingInput


def test_fit_inputs_to_channels() -> None:
    assert format_inputs_to_input_config(None) is None
    [one] = format_inputs_to_input_config("s3://b/train") or []
    assert one["ChannelName"] == "training"
    [file_channel] = format_inputs_to_input_config("file:///data/train") or []
    assert file_channel["DataSource"]["S3DataSource"]["S3Uri"] == "file:///data/train"
    shared = TrainingInput("s3://b/x", content_type="text/csv")
    channels = format_inputs_to_input_config({"train": shared, "test": "s3://b/test"}) or []
    assert [c["ChannelName"] for c in channels] == ["train", "test"]
    assert channels[0]["ContentType"] == "text/csv"
    assert "ChannelName" not in shared.config


@pytest.mark.parametrize("bad", ["relative/path.csv", "/abs/path", "http://host/x", 3, ["s3://b/x"]])
def test_bad_inputs_are_validation_errors(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        format_inputs_to_input_config(bad)  # type: ignore[arg-type]
    assert info.value.field == "inputs" or (info.value.field or "").startswith("inputs")


def test_logs_argument() -> None:
    assert [normalize_logs(v) for v in (True, False, None, "All", "None", "Training")] == [
        "All",
        "None",
        "None",
        "All",
        "None",
        "Training",
    ]
