"""What ``fit(wait=True)`` prints (reference §4.2) and how a job's end is judged."""

from __future__ import annotations

import io
import time

import pytest

from trainforge.errors import UnexpectedStatusError
from trainforge.logs import (
    STOPPED_WARNING,
    Interleaver,
    LogPrinter,
    check_job_status,
    format_status_line,
    print_billing,
)

T0 = 1700000000.25


def test_status_line_uses_local_time_of_the_transition() -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0))
    assert format_status_line("Starting", "Launching requested ML instances", T0) == (
        f"{stamp} Starting - Launching requested ML instances"
    )


def test_each_transition_prints_once_and_lines_print_as_written() -> None:
    out = io.StringIO()
    printer = LogPrinter(out)
    assert printer.status("Training", "Training in progress.", T0)
    assert not printer.status("Training", "Training in progress.", T0)  # a reconnect repeats the current one
    printer.log("epoch 1\n")
    printer.log("  indented\tand tabbed")
    printer.transitions(
        [
            {"Status": "Training", "StatusMessage": "Training in progress.", "StartTime": T0},
            {"Status": "Uploading", "StatusMessage": "Uploading generated training model", "StartTime": T0 + 1},
        ]
    )
    lines = out.getvalue().splitlines()
    assert lines[1:3] == ["epoch 1", "  indented\tand tabbed"]
    assert [line.split(" ", 2)[2] for line in (lines[0], lines[3])] == [
        "Training - Training in progress.",
        "Uploading - Uploading generated training model",
    ]
    assert len(lines) == 4


def test_dots_then_a_line_start_on_a_new_line() -> None:
    out = io.StringIO()
    printer = LogPrinter(out)
    printer.dot()
    printer.dot()
    printer.line("done")
    assert out.getvalue() == "..\ndone\n"


def test_failed_job_raises_with_sagemakers_message() -> None:
    desc = {"TrainingJobName": "j1", "TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: boom"}
    with pytest.raises(UnexpectedStatusError) as info:
        check_job_status(desc)
    assert str(info.value) == "Error for Training job j1: Failed. Reason: AlgorithmError: boom"
    assert (info.value.job_name, info.value.status, info.value.failure_reason) == (
        "j1",
        "Failed",
        "AlgorithmError: boom",
    )
    with pytest.raises(UnexpectedStatusError, match=r"\(No reason provided\)"):
        check_job_status({"TrainingJobName": "j2", "TrainingJobStatus": "Failed"})


def test_completed_passes_and_stopped_warns() -> None:
    check_job_status({"TrainingJobName": "j", "TrainingJobStatus": "Completed"})
    out = io.StringIO()
    check_job_status({"TrainingJobName": "j", "TrainingJobStatus": "Stopped"}, LogPrinter(out))
    assert out.getvalue() == STOPPED_WARNING + "\n"


def test_billing_totals_over_instances() -> None:
    out = io.StringIO()
    print_billing(
        {
            "ResourceConfig": {"InstanceCount": 2},
            "TrainingTimeInSeconds": 100,
            "BillableTimeInSeconds": 40,
            "EnableManagedSpotTraining": True,
        },
        LogPrinter(out),
    )
    assert out.getvalue().splitlines() == [
        "Training seconds: 200",
        "Billable seconds: 80",
        "Managed Spot Training savings: 60.0%",
    ]
    out = io.StringIO()
    print_billing({"ResourceConfig": {"InstanceCount": 1}}, LogPrinter(out))
    assert out.getvalue() == ""


def test_transitions_print_after_the_line_of_their_log_cursor() -> None:
    out = io.StringIO()
    placed = Interleaver(LogPrinter(out))
    placed.transitions(
        [
            {"Status": "Starting", "StatusMessage": "s", "StartTime": T0, "LogCursor": 0},
            {"Status": "Training", "StatusMessage": "t", "StartTime": T0 + 1, "LogCursor": 11},
            {"Status": "Uploading", "StatusMessage": "u", "StartTime": T0 + 2, "LogCursor": 13},
            {"Status": "Completed", "StatusMessage": "c", "StartTime": T0 + 3, "LogCursor": 99},
        ]
    )
    for cursor, message in ((11, "setup"), (12, "epoch 1"), (13, "epoch 2")):
        placed.line({"cursor": cursor, "message": message})
    # A live stream repeats a transition it also found recorded: printed once, where it happened.
    placed.status({"SecondaryStatus": "Uploading", "StatusMessage": "u", "Time": T0 + 2})
    placed.finish()
    lines = [line.split(" ", 2)[2] if line[:2] == "20" else line for line in out.getvalue().splitlines()]
    assert lines == ["Starting - s", "setup", "Training - t", "epoch 1", "epoch 2", "Uploading - u", "Completed - c"]


def test_statuses_only_still_follow_the_lines() -> None:
    out = io.StringIO()
    placed = Interleaver(LogPrinter(out), show_lines=False)
    placed.transitions([{"Status": "Training", "StatusMessage": "t", "StartTime": T0, "LogCursor": 5}])
    placed.line({"cursor": 5, "message": "hidden"})
    placed.finish()
    assert out.getvalue().endswith("Training - t\n") and "hidden" not in out.getvalue()
