"""The pure parts of ``bench/run_all.py``: reading a benchmark's last JSON, the targets, the README's table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

RUN_ALL = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


run_all = _load()

# one run's results as the benchmarks print them (figures shaped like the "today")
TODAY: dict[str, dict[str, Any]] = {
    "fit_latency": {"name": "fit_latency", "fit_to_first_line_s": 0.54, "python_direct_first_line_s": 0.012},
    "ray_overhead": {
        "name": "ray_overhead",
        "fit_to_first_line_s": {"local": 0.5, "ray_job_submission": 1.25},
    },
    "remote_overhead": {"direct_call_s": 2e-06, "warm_round_trip_s": 0.25, "cold_round_trip_s": 0.51},
    "log_latency": {"name": "log_latency", "p50_ms": 171.0, "p95_ms": 249.0},
}
FAST: dict[str, dict[str, Any]] = {
    "fit_latency": {"fit_to_first_line_s": 0.12, "python_direct_first_line_s": 0.012},
    "ray_overhead": {"fit_to_first_line_s": {"local": 0.12, "ray_job_submission": 1.25}},
    "remote_overhead": {"direct_call_s": 2e-06, "warm_round_trip_s": 0.03, "cold_round_trip_s": 0.29},
    "log_latency": {"p95_ms": 12.0},
}


def by_what(targets: list[Any]) -> dict[str, Any]:
    return {target.what: target for target in targets}


def test_last_json_line_is_read_after_other_output() -> None:
    out = 'starting server\n{"not": "this one"}\nsome log line\n{"name": "fit_latency", "x": 1}\n'
    assert run_all.parse_last_json(out) == {"name": "fit_latency", "x": 1}


def test_indented_json_at_the_end_is_read_whole() -> None:
    value = {"name": "remote_overhead", "nested": {"a": [{"b": 1}, {"c": 2}]}, "warm_round_trip_s": 0.2}
    out = "progress...\n" + json.dumps(value, indent=2) + "\n\n"
    assert run_all.parse_last_json(out) == value


@pytest.mark.parametrize(
    "out",
    ["", "no json here\n", '{"name": "x"}\ntrailing words after the JSON\n', "[1, 2, 3]\n", '{"broken": \n'],
)
def test_output_without_a_final_json_object_gives_none(out: str) -> None:
    assert run_all.parse_last_json(out) is None


def test_pick_follows_dotted_paths_and_skips_errors() -> None:
    result = {"fit_to_first_line_s": {"local": 0.5}, "flag": True}
    assert run_all.pick(result, "missing", "fit_to_first_line_s.local") == 0.5
    assert run_all.pick(result, "flag") is None  # a bool is not a figure
    assert run_all.pick({"error": "boom", "x": 1}, "x") is None
    assert run_all.pick(None, "x") is None


def test_todays_figures_miss_every_target_with_their_ratios() -> None:
    targets = by_what(run_all.evaluate_targets(TODAY))
    fit = targets["fit() -> first line of a trivial script"]
    assert (fit.measured, fit.met, fit.target) == (0.54, False, "<= 0.150 s")
    assert fit.baseline == "python train.py 0.012 s"
    assert fit.ratio == pytest.approx(0.02, abs=0.005)
    ray = targets["fit() -> first line vs Ray Jobs submit -> first line"]
    assert ray.measured == pytest.approx(2.5) and not ray.met  # ours interleaved (0.5), not fit_latency's 0.54
    assert ray.baseline == "Ray Jobs 1.250 s"
    assert not targets["@remote no-op round trip, warm"].met
    assert not targets["@remote no-op round trip, cold"].met
    logs = targets["print -> line visible in fit(), p95"]
    assert (logs.measured, logs.met) == (249.0, False)


def test_fast_figures_meet_the_targets() -> None:
    targets = by_what(run_all.evaluate_targets(FAST))
    for what in (
        "fit() -> first line of a trivial script",
        "fit() -> first line vs Ray Jobs submit -> first line",
        "@remote no-op round trip, warm",
        "@remote no-op round trip, cold",
        "print -> line visible in fit(), p95",
    ):
        assert targets[what].met, targets[what]
    assert targets["fit() -> first line vs Ray Jobs submit -> first line"].measured == 10.4


def test_a_limit_itself_is_met() -> None:
    targets = by_what(run_all.evaluate_targets({"log_latency": {"p95_ms": 30.0}}))
    assert targets["print -> line visible in fit(), p95"].met


def test_packaging_target_is_ten_times_todays_rate_in_the_same_run() -> None:
    pack = {"archive_speed": {"tarfile_zlib1_mib_s": 28.5, "ours_mib_s": 290.0}}
    target = by_what(run_all.evaluate_targets(pack))["model.tar.gz of 256 MiB float32 weights (standard gzip)"]
    assert target.met and target.ratio == 10.2
    assert target.target == ">= 285.0 MiB/s (10x today's)"
    pack["archive_speed"]["ours_mib_s"] = 280.0
    assert not by_what(run_all.evaluate_targets(pack))[target.what].met


def test_a_failed_or_missing_bench_is_an_unmet_target_that_says_why() -> None:
    benches = {"ray_overhead": {"error": "ray is not installed here"}, "fit_latency": {"fit_to_first_line_s": 0.1}}
    targets = by_what(run_all.evaluate_targets(benches))
    ray = targets["fit() -> first line vs Ray Jobs submit -> first line"]
    assert (ray.measured, ray.met) == (None, False)
    assert "ray is not installed" in (ray.note or "")
    warm = targets["warm fit() -> first line (keep-alive)"]
    assert not warm.met and warm.note == "warm_start was not run"


def test_readme_table_is_replaced_between_the_markers_only() -> None:
    text = "# Title\n\nintro\n<!-- bench:start -->\nold table\n| a | b |\n<!-- bench:end -->\n\n## Next\nkept\n"
    new = run_all.rewrite_readme(text, "| new | table |\n")
    assert new == "# Title\n\nintro\n<!-- bench:start -->\n| new | table |\n<!-- bench:end -->\n\n## Next\nkept\n"
    assert run_all.rewrite_readme(new, "| new | table |") == new  # rewriting is stable


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        "<!-- bench:start -->\nonly the start\n",
        "<!-- bench:end -->\nreversed\n<!-- bench:start -->\n",
        "<!-- bench:start -->\n<!-- bench:end -->\n<!-- bench:start -->\n<!-- bench:end -->\n",
    ],
)
def test_readme_without_one_pair_of_markers_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bench:"):
        run_all.rewrite_readme(text, "table")


def test_rendered_table_names_the_machine_and_every_target() -> None:
    machine = {"cpu": "Test CPU", "cores": 2, "memory_gib": 23.4, "os": "Debian", "python": "3.11.7"}
    report = run_all.build_report({**machine, "date": "2026-12-03T21:00:00+00:00", "commit": "abc1234"}, TODAY)
    table = run_all.render_table(report)
    assert "2026-12-03" in table and "Test CPU, 2 cores, 23.4 GiB" in table and "abc1234" in table
    for target in report["targets"]:
        assert f"| {run_all.pretty(target['what'])} |" in table
    assert "| `fit()` → first line of a trivial script | ≤ 0.150 s |" in table
    assert "| 0.540 s |" in table and "warm_start was not run" in table
    assert "direct call 2.0 µs" in table
    assert "Python 3.11.7." in table  # no load average recorded: none shown
    loaded = run_all.machine_line({**machine, "load_avg_1m_at_start": 3.5})
    assert loaded.endswith("Python 3.11.7; load average 3.5 at the start.")
    assert json.loads(json.dumps(report)) == report  # the report is plain JSON


def test_only_selects_known_benches_in_registry_order() -> None:
    assert [b.name for b in run_all.select("remote_overhead,fit_latency")] == ["fit_latency", "remote_overhead"]
    assert "storage" not in [b.name for b in run_all.select(None)]
    with pytest.raises(ValueError, match="unknown nope; choose from"):
        run_all.select("fit_latency,nope")


def test_runs_replaces_the_run_count_only_of_benches_that_take_it() -> None:
    benches = {b.name: b for b in run_all.BENCHES}
    assert benches["fit_latency"].argv(2)[-2:] == ["--runs", "2"]
    assert benches["fit_latency"].argv()[-2:] == ["--runs", "5"]
    assert "--runs" not in benches["log_latency"].argv(2)


def test_a_pipe_in_a_cell_does_not_split_the_row() -> None:
    benches = {"log_latency": {"error": "exit status 1: tar | gzip failed"}}
    table = run_all.render_table(run_all.build_report({}, benches))
    row = next(line for line in table.splitlines() if line.startswith("| print → line visible"))
    assert "tar \\| gzip" in row and row.count(" | ") == 4


def test_a_figure_under_other_keys_is_found_by_its_words_and_the_note_names_the_key() -> None:
    benches = {
        "warm_start": {
            "python_current": {"forked_first_line_ms": 21.0, "fork_off_first_line_ms": 260.0},
            "heavy_sklearn": {"forked_first_line_ms": 25.0},
        },
        "archive_speed": {
            "write": {"tarfile_zlib1": {"mib_s": 28.5}, "archives_1t": {"mib_s": 300.0}, "archives_2t": {"mib_s": 380}},
            "read": {"tarfile": {"mib_s": 90.0}, "archives": {"mib_s": 900.0}},
        },
    }
    targets = by_what(run_all.evaluate_targets(benches))
    warm = targets["warm fit() -> first line (keep-alive)"]
    assert (warm.measured, warm.met) == (0.021, True)
    assert warm.baseline == "warm, TRAINFORGE_WARM_FORK=off 0.260 s"
    assert warm.note == "read from key python_current.forked_first_line_ms"
    pack = targets["model.tar.gz of 256 MiB float32 weights (standard gzip)"]
    assert (pack.measured, pack.ratio, pack.met) == (380.0, 13.3, True)  # the best writer, never a read speed
    assert pack.note == "read from key write.tarfile_zlib1.mib_s; read from key write.archives_2t.mib_s"


def test_guess_keeps_to_the_unit() -> None:
    result = {"forked_runs": 5, "forked_first_line_s": 0.04, "forked_total_ms": 30.0}
    assert run_all.guess(result, include=("forked",), unit="s") == (0.03, "forked_total_ms")
    assert run_all.guess(result, include=("forked",), unit="MiB/s") == (None, None)


def test_packaging_as_its_bench_prints_it_lists_the_other_tools_and_needs_a_valid_gzip() -> None:
    result: dict[str, Any] = {
        "name": "archive_speed",
        "write_mib_s": {"tarfile_zlib1": 28.5, "archives_1t": 377.0, "archives_2t": 472.0, "ours": 472.0},
        "read_mib_s": {"tarfile": 111.0, "archives": 900.0},
        "ours_archive_verified": {"tar_tzf": True, "gzip_t": True},
    }
    result["write_mib_s"] |= {"tar_gzip1": 23.8, "tar_zstd1": 325.0, "tar": 737.0}
    what = "model.tar.gz of 256 MiB float32 weights (standard gzip)"
    target = by_what(run_all.evaluate_targets({"archive_speed": result}))[what]
    assert (target.measured, target.ratio, target.met, target.note) == (472.0, 16.6, True, None)
    assert target.baseline == (
        "tarfile zlib-1 28.5 MiB/s; tar | gzip -1 23.8 MiB/s; tar | zstd -1 325.0 MiB/s; plain tar 737.0 MiB/s"
    )
    result["ours_archive_verified"]["gzip_t"] = False
    target = by_what(run_all.evaluate_targets({"archive_speed": result}))[what]
    assert not target.met and "failed a gzip check" in (target.note or "")


def write_bench(folder: Path, name: str, body: str) -> Any:
    (folder / f"{name}.py").write_text(body)
    return run_all.Bench(name, runs=1, timeout_s=20)


def test_a_bench_runs_as_a_script_and_its_last_json_line_is_its_result(tmp_path: Path) -> None:
    body = (
        "import argparse, json, sys\n"
        "import helper\n"  # a module beside the script is found (bench/ is on the path, last)
        "p = argparse.ArgumentParser(); p.add_argument('--runs', type=int); a = p.parse_args()\n"
        "print('progress', file=sys.stderr); print('a line')\n"
        "if __name__ == '__main__': print(json.dumps({'name': 'ok', 'runs': a.runs, 'v': helper.V}))\n"
    )
    (tmp_path / "helper.py").write_text("V = 7\n")
    result = run_all.run_bench(write_bench(tmp_path, "ok", body), 3, folder=tmp_path)
    assert {k: result[k] for k in ("name", "runs", "v")} == {"name": "ok", "runs": 3, "v": 7}
    assert result["wall_s"] >= 0


def test_a_failing_missing_or_silent_bench_is_an_error_entry(tmp_path: Path) -> None:
    missing = run_all.run_bench(run_all.Bench("nowhere"), folder=tmp_path)
    assert missing == {"error": "bench/nowhere.py is missing"}
    crash = run_all.run_bench(write_bench(tmp_path, "crash", "raise RuntimeError('no server here')\n"), folder=tmp_path)
    assert crash["error"].startswith("exit status 1") and "RuntimeError: no server here" in crash["error"]
    partial = "import json, sys\nprint(json.dumps({'x': 1}))\nsys.exit(2)\n"
    failed = run_all.run_bench(write_bench(tmp_path, "partial", partial), folder=tmp_path)
    assert failed["error"] == "exit status 2" and failed["partial"] == {"x": 1}


def test_a_bench_past_its_timeout_is_stopped_and_reported(tmp_path: Path) -> None:
    body = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('cleaned up', flush=True)\n"
    (tmp_path / "slow.py").write_text(body)
    result = run_all.run_bench(run_all.Bench("slow", timeout_s=1.0), folder=tmp_path)
    assert result["error"] == "timed out after 1 s"
    assert result["stdout_tail"] == "cleaned up"  # SIGINT first: its finally/except blocks stop what it started
