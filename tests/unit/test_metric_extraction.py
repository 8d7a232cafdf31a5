"""Metric extraction from log lines: SageMaker's regexes on real TABs and on their ``#011`` rendering."""

from __future__ import annotations

import json
import time

from trainforge.service.metric_extraction import (
    MAX_MATCH_CHARS,
    ExtractorCache,
    MetricExtractor,
    compile_definition,
    definitions_of,
)
from trainforge.spec.metrics import metric_value
from trainforge.spec.status import SecondaryStatus, TrainingJobStatus
from trainforge.store.records import JobRecord

XGB_VALIDATION = r".*\[[0-9]+\].*#011validation-rmse:(\S+)"
XGB_TRAIN = r".*\[[0-9]+\].*#011train-rmse:(\S+)"


def extractor(*defs: tuple[str, str]) -> MetricExtractor:
    return MetricExtractor([{"Name": n, "Regex": r} for n, r in defs])


def test_aws_regexes_match_a_line_with_real_tabs() -> None:
    ex = extractor(("validation:rmse", XGB_VALIDATION), ("train:rmse", XGB_TRAIN))
    points = ex.extract("[3]\ttrain-rmse:0.25\tvalidation-rmse:0.3", 100.0)
    assert points == [
        {"name": "validation:rmse", "value": 0.3, "timestamp": 100.0},
        {"name": "train:rmse", "value": 0.25, "timestamp": 100.0},
    ]


def test_a_line_already_in_aws_form_and_tab_regexes_match_too() -> None:
    ex = extractor(("validation:rmse", XGB_VALIDATION), ("tabbed", r"\ttrain-rmse:(\S+)"))
    assert ex.extract("[3]#011train-rmse:0.25#011validation-rmse:0.3", 1.0) == [
        {"name": "validation:rmse", "value": 0.3, "timestamp": 1.0}
    ]
    assert ex.extract("[4]\ttrain-rmse:0.2\tvalidation-rmse:0.1", 2.0) == [
        {"name": "validation:rmse", "value": 0.1, "timestamp": 2.0},
        {"name": "tabbed", "value": 0.2, "timestamp": 2.0},
    ]


def test_one_value_per_line_and_metric_the_first_match() -> None:
    ex = extractor(("loss", r"loss=(\S+)"))
    assert ex.extract("loss=0.5 loss=0.4", 1.0) == [{"name": "loss", "value": 0.5, "timestamp": 1.0}]
    # The line matches in both forms: still one point.
    ex2 = extractor(("m", r"m[:\t#011]+(\d+)"))
    assert len(ex2.extract("m:\t7", 1.0)) == 1


def test_non_numeric_captures_are_skipped() -> None:
    ex = extractor(("loss", r"loss=(\S+)"), ("acc", r"acc=(\S+)"))
    assert ex.extract("loss=abc acc=0.9", 1.0) == [{"name": "acc", "value": 0.9, "timestamp": 1.0}]
    assert ex.extract("loss=0.5, acc=nan", 1.0) == []  # "0.5," is not a number; NaN is not stored
    assert ex.extract("loss=inf", 1.0) == []
    assert ex.extract("loss=-1.5e-3", 1.0) == [{"name": "loss", "value": -0.0015, "timestamp": 1.0}]


def test_regexes_without_a_group_or_that_python_cannot_compile_are_ignored() -> None:
    assert compile_definition("x", "loss=[0-9]+") is None
    assert compile_definition("x", "loss=(") is None
    ex = extractor(("bad", "loss=("), ("nogroup", "loss"), ("ok", r"loss=(\d+)"))
    assert [m.name for m in ex.metrics] == ["ok"]
    assert not extractor() and not extractor(("nogroup", "x"))


def test_a_leading_dot_star_is_anchored_only_when_that_finds_the_same_match() -> None:
    assert compile_definition("a", XGB_VALIDATION).anchored  # type: ignore[union-attr]
    alternation = compile_definition("b", r".*x=(\d+)|y=(\d+)")
    assert alternation is not None and not alternation.anchored
    assert extractor(("b", r".*x=(\d+)|y=(\d+)")).extract("zz y=3", 1.0) == []  # group 1 did not take part
    assert extractor(("c", r".*x=(\d+)|x=(\d+)")).extract("x=4", 1.0)[0]["value"] == 4.0


def test_long_lines_are_matched_quickly_on_their_head_only() -> None:
    ex = extractor(("validation:rmse", XGB_VALIDATION), ("loss", r"loss=(\S+)"))
    pathological = "[1]" * 20_000  # a leading .* searched at every position would take minutes
    started = time.monotonic()
    assert ex.extract(pathological, 1.0) == []
    assert ex.extract("a" * 60_000 + " loss=1", 1.0) == []  # past MAX_MATCH_CHARS
    assert time.monotonic() - started < 5.0
    assert ex.extract("a" * (MAX_MATCH_CHARS - 10) + "loss=2", 1.0)[0]["value"] == 2.0


def test_extract_lines_keys_points_by_seq_with_the_line_timestamp() -> None:
    ex = extractor(("loss", r"loss=(\S+)"))
    lines = [
        {"seq": 7, "timestamp": 10.5, "message": "epoch=1 loss=0.5"},
        {"seq": 8, "timestamp": 11.0, "message": "no metric here"},
        {"seq": 9, "timestamp": 12.0, "message": "epoch=2 loss=0.4"},
    ]
    assert ex.extract_lines(lines) == {
        7: [{"name": "loss", "value": 0.5, "timestamp": 10.5}],
        9: [{"name": "loss", "value": 0.4, "timestamp": 12.0}],
    }


def test_metric_value_accepts_finite_numbers_only() -> None:
    assert metric_value("1e3") == 1000.0 and metric_value(2) == 2.0
    for bad in ("", "1,0", "NaN", "-inf", None, True, "0x10", [1]):
        assert metric_value(bad) is None


def job(job_id: int, definitions: list[dict[str, str]] | None) -> JobRecord:
    spec = {"AlgorithmSpecification": {"TrainingInputMode": "File"}}
    if definitions is not None:
        spec["AlgorithmSpecification"]["MetricDefinitions"] = definitions  # type: ignore[index]
    return JobRecord(
        id=job_id, name=f"j{job_id}", arn="arn", spec_json=json.dumps(spec),
        status=TrainingJobStatus.IN_PROGRESS, secondary_status=SecondaryStatus.TRAINING, status_message=None,
        failure_reason=None, instance_type="ml.m5.large", instance_count=1, model_artifacts="s3://b/m",
        creation_time=0.0, last_modified_time=0.0, training_start_time=None, training_end_time=None,
        stop_requested=None, backend=None, backend_handle=None, agent_token_hash=None, heartbeat_time=None,
    )  # fmt: skip


def test_the_cache_compiles_each_job_once_and_keeps_the_most_recent() -> None:
    cache = ExtractorCache(size=2)
    a = job(1, [{"Name": "loss", "Regex": r"loss=(\S+)"}])
    first = cache.get(a)
    assert cache.get(a) is first and [m.name for m in first.metrics] == ["loss"]
    assert not cache.get(job(2, None))
    cache.get(job(3, []))
    assert len(cache) == 2
    assert cache.get(a) is not first  # evicted (least recently used), compiled again


def test_definitions_of_a_stored_spec() -> None:
    assert definitions_of({}) == []
    assert definitions_of({"AlgorithmSpecification": {"MetricDefinitions": [{"Name": "a", "Regex": "(x)"}]}}) == [
        {"Name": "a", "Regex": "(x)"}
    ]
