"""Every benchmark of issue #13 in one go, each beside its baseline, as one JSON report (and the README's table).

Runs each benchmark in its own subprocess (``bench/<name>.py`` as ``__main__`` under this interpreter, see
:meth:`Bench.argv`), one after another, never two at once, each with a timeout and modest run counts (the whole run
takes about 5-8 minutes on a 2-core machine). Each
benchmark prints one JSON object as the last thing on its stdout; that object is its entry under ``benches``. A
benchmark that is missing, fails, prints no JSON or runs past its timeout gets ``{"error": ...}`` there instead,
and the run goes on. Then the issue's targets are evaluated from the figures measured in this run:

- ``fit()`` -> first line of a trivial script <= 0.15 s, and >= 8x faster than Ray Jobs' submit -> first line;
- the same on a warm worker (keep-alive) <= 50 ms;
- ``@remote`` no-op round trip warm <= 50 ms, cold <= 0.3 s;
- ``model.tar.gz`` >= 10x the MiB/s of today's writer (``tarfile``, zlib level 1), still standard gzip;
- print -> line visible in ``fit()`` p95 <= 30 ms.

Prints one JSON report on stdout (progress goes to stderr)::

    {"machine": {"cpu", "cores", "memory_gib", "os", "python", "date", "commit", "load_avg_1m_at_start"},
     "benches": {name: result | {"error": ...}},
     "targets": [{"what", "target", "measured", "unit", "met", "baseline", "ratio", "note"}],
     "figures": [{"what", "measured", "baseline"}]}

``ratio`` is how many times faster than the baseline (its time over ours, or our rate over its rate).

    python bench/run_all.py [--only fit_latency,ray_overhead] [--runs N] [--out report.json] [--readme]

``--runs N`` replaces the run count of every benchmark that takes ``--runs``; ``--readme`` rewrites README.md's
table between ``<!-- bench:start -->`` and ``<!-- bench:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
INTERRUPT_GRACE_S = 30.0
"""After a timeout: how long a benchmark has, after SIGINT, to stop what it started (servers, a Ray head)."""


_RUNNER = (
    "import os, runpy, sys; script = sys.argv[1]; sys.argv = sys.argv[1:]; "
    "sys.path.append(os.path.dirname(script)); runpy.run_path(script, run_name='__main__')"
)
"""Runs ``argv[1]`` as a script, its folder appended to ``sys.path`` (``-P`` keeps it from being prepended)."""


@dataclass(frozen=True)
class Bench:
    """One benchmark script, ``bench/<name>.py``, and how :func:`main` runs it."""

    name: str
    args: tuple[str, ...] = ()
    runs: int | None = None
    """The ``--runs`` it gets (``--runs`` of run_all replaces it); ``None``: it takes no ``--runs``."""
    timeout_s: float = 300.0
    default: bool = True
    """Run without ``--only``; the others run only when ``--only`` names them."""

    def argv(self, runs: int | None = None, *, folder: Path = BENCH_DIR) -> list[str]:
        """The command line, ``runs`` (where given) replacing the bench's own run count.

        The script runs as ``__main__`` with ``bench/`` last on its path, not first as ``python bench/x.py`` puts
        it: a bench module must never shadow a distribution that Ray and others import.
        """
        argv = [sys.executable, "-P", "-c", _RUNNER, str(folder / f"{self.name}.py"), *self.args]
        if self.runs is not None:
            argv += ["--runs", str(runs if runs is not None else self.runs)]
        return argv


BENCHES: tuple[Bench, ...] = (
    # first, on a quiet machine: the fit() figure; then the Ray Jobs baseline, interleaved with our own fit()
    Bench("fit_latency", runs=5, timeout_s=180),
    Bench("ray_overhead", ("--ways", "local,ray_job_submission", "--no-skew"), runs=3, timeout_s=360),
    Bench("supervisor_start", runs=5, timeout_s=180),
    Bench("warm_start", runs=5, timeout_s=300),
    Bench("remote_overhead", runs=5, timeout_s=240),
    Bench("archive_speed", ("--size-mib", "256"), runs=3, timeout_s=480),
    Bench("log_latency", ("--lines", "50"), timeout_s=180),
    Bench(
        "api_load",
        ("--db", "sqlite", "--jobs", "300", "--clients", "20", "--stored", "10000", "--log-lines", "50000"),
        timeout_s=300,
    ),
    Bench("env_build", ("--images", "trainforge/sklearn:1.2-1", "--no-empty-cache"), runs=3, timeout_s=360),
    # not among the figures: only with --only
    Bench("sandbox_start", default=False),
    Bench("container_start", default=False, timeout_s=600),
    Bench("channel_staging", default=False),
    Bench("storage", default=False, timeout_s=600),
    Bench("invoke_latency", default=False),
    Bench("console_list", default=False),
)


# --- reading a benchmark's output ---------------------------------------------------------------------------------


def parse_last_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object that ends ``stdout`` (one line, or indented over several), or ``None`` where there is none.

    Only an object that runs to the end of the output counts: anything printed after it means the benchmark broke
    the "JSON last" rule, and the result is ``None``.
    """
    lines = stdout.rstrip().splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if not lines[start].lstrip().startswith("{"):
            continue
        try:
            value = json.loads("\n".join(lines[start:]))
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _tail(text: str, chars: int = 2000) -> str:
    return text[-chars:].strip()


def _last_line(stderr: str) -> str:
    """``": <the last line of stderr>"`` (where a traceback says what went wrong), or ``""``."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return f": {lines[-1][:300]}" if lines else ""


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGINT the benchmark's process group (its ``finally`` blocks stop its servers), then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGINT, INTERRUPT_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_bench(bench: Bench, runs: int | None = None, *, folder: Path = BENCH_DIR) -> dict[str, Any]:
    """Run ``folder/<bench.name>.py`` to its end or its timeout: its JSON result, or ``{"error": ...}``; never
    raises. The result gains ``wall_s``, the seconds the benchmark ran."""
    script = folder / f"{bench.name}.py"
    if not script.is_file():
        return {"error": f"bench/{bench.name}.py is missing"}
    # files, not pipes: a server the benchmark leaves running must not hold its output open and stall this run
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(
            bench.argv(runs, folder=folder),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
            text=True,
            start_new_session=True,  # its own group: a timeout stops the benchmark and every process it started
        )
        timed_out = False
        try:
            proc.wait(timeout=bench.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(proc)
        seconds = round(time.perf_counter() - start, 1)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if timed_out:
        return {
            "error": f"timed out after {bench.timeout_s:.0f} s",
            "stderr_tail": _tail(err),
            "stdout_tail": _tail(out, 500),
            "wall_s": seconds,
        }
    result = parse_last_json(out)
    if result is None:
        return {
            "error": f"exit status {proc.returncode} and no JSON object last on stdout{_last_line(err)}",
            "stderr_tail": _tail(err),
            "stdout_tail": _tail(out, 500),
        }
    if proc.returncode != 0 and "error" not in result:
        result = {
            "error": f"exit status {proc.returncode}{_last_line(err)}",
            "partial": result,
            "stderr_tail": _tail(err),
        }
    result["wall_s"] = seconds
    return result


# --- the targets --------------------------------------------------------------------------------------------
# Where each benchmark puts a target's figure (dotted paths; the first one present counts). A result with none of
# them is searched by its keys' words (:func:`guess`), and the target's note names the key it read.
WARM_FORKED_PATHS = ("forked_first_line_s", "fit_to_first_line_s.forked", "forked.fit_to_first_line_s", "forked_s")
WARM_OFF_PATHS = ("fork_off_first_line_s", "fit_to_first_line_s.fork_off", "fork_off.fit_to_first_line_s")
PACK_TODAY_PATHS = ("write_mib_s.tarfile_zlib1", "mib_s.tarfile_zlib1", "tarfile_zlib1_mib_s", "today_mib_s")
PACK_OURS_PATHS = ("write_mib_s.ours", "mib_s.ours", "ours_mib_s")


def pick(result: Mapping[str, Any] | None, *paths: str) -> float | None:
    """The first number found at one of ``paths`` (dotted keys, e.g. ``"fit_to_first_line_s.local"``) in ``result``.

    ``None`` where ``result`` is missing, is an error entry, or has a number at none of the paths.
    """
    if not result or "error" in result:
        return None
    for path in paths:
        node: Any = result
        for key in path.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, int | float) and not isinstance(node, bool):
            return float(node)
    return None


def numbers(result: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """Every number in ``result`` by its dotted, lower-cased key path (``{"a": {"B_s": 1}}`` -> ``{"a.b_s": 1.0}``)."""
    found: dict[str, float] = {}
    for key, value in (result or {}).items():
        path = f"{prefix}{str(key).lower()}"
        if isinstance(value, Mapping):
            found |= numbers(value, f"{path}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[path] = float(value)
    return found


def guess(
    result: Mapping[str, Any] | None,
    *,
    include: Sequence[str],
    exclude: Sequence[str] = (),
    unit: str,
    choose: Callable[[Sequence[float]], float] = min,
) -> tuple[float | None, str | None]:
    """A figure found by its key's words where no exact path matched: ``(value, key path)`` or ``(None, None)``.

    Only keys of ``unit`` count: ``"s"`` takes keys ending ``_s`` and ``_ms`` (converted to seconds), ``"ms"`` those
    ending ``_ms``, ``"MiB/s"`` those holding ``mib``. Of the keys that hold every word of ``include`` and none of
    ``exclude``, ``choose`` picks the value (``min`` for a time, ``max`` for a rate: the best of several variants).
    """
    if not result or "error" in result:
        return None, None
    candidates: dict[str, float] = {}
    for path, value in numbers(result).items():
        if not all(word in path for word in include) or any(word in path for word in exclude):
            continue
        scale = {"s": {"_s": 1.0, "_ms": 0.001}, "ms": {"_ms": 1.0}}.get(unit, {})
        suffix = next((end for end in scale if path.endswith(end)), None)
        if suffix is not None:
            candidates[path] = value * scale[suffix]
        elif unit == "MiB/s" and "mib" in path:
            candidates[path] = value
    if not candidates:
        return None, None
    value = choose(list(candidates.values()))
    return value, next(path for path, v in candidates.items() if v == value)


@dataclass(frozen=True)
class Target:
    """One row of the issue's table as measured in this run."""

    what: str
    target: str
    measured: float | None
    unit: str
    met: bool
    baseline: str | None = None
    ratio: float | None = None
    """How many times faster than the baseline (>1: faster)."""
    note: str | None = None


def _why_missing(benches: Mapping[str, Mapping[str, Any]], *names: str) -> str:
    for name in names:
        entry = benches.get(name)
        if entry is None:
            return f"{name} was not run"
        if "error" in entry:
            return f"{name}: {entry['error']}"
    return f"{', '.join(names)}: no such figure in the result"


def _fmt(value: float | None, unit: str) -> str:
    """``value`` as the table shows it: seconds to the ms, ms and MiB/s to a tenth, ratios to a tenth."""
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.3f} s" if value >= 0.001 or value == 0 else f"{value * 1e6:.1f} µs"
    if unit == "x":
        return f"{value:.1f}x"
    return f"{value:.1f} {unit}"


def _ratio(faster: float | None, slower: float | None) -> float | None:
    if faster is None or slower is None or faster <= 0:
        return None
    return float(f"{slower / faster:.3g}")  # three significant digits: 0.0217 as well as 10.4


def _at_most(
    what: str,
    measured: float | None,
    limit: float,
    unit: str,
    *,
    baseline_what: str | None = None,
    baseline: float | None = None,
    missing: str = "",
    note: str | None = None,
) -> Target:
    """A latency target: ``measured <= limit``; ratio = baseline / measured; ``note`` where measured, else
    ``missing``."""
    return Target(
        what=what,
        target=f"<= {_fmt(limit, unit)}",
        measured=measured,
        unit=unit,
        met=measured is not None and measured <= limit,
        baseline=f"{baseline_what} {_fmt(baseline, unit)}" if baseline_what and baseline is not None else None,
        ratio=_ratio(measured, baseline),
        note=note if measured is not None else missing,
    )


def _exact_or_guess(
    result: Mapping[str, Any] | None,
    paths: Sequence[str],
    *,
    include: Sequence[str],
    exclude: Sequence[str] = (),
    unit: str,
    choose: Callable[[Sequence[float]], float] = min,
) -> tuple[float | None, str | None]:
    """:func:`pick` at ``paths``, else :func:`guess`: ``(value, "key <path>")`` saying which key a guess read."""
    value = pick(result, *paths)
    if value is not None:
        return value, None
    value, path = guess(result, include=include, exclude=exclude, unit=unit, choose=choose)
    return value, (f"read from key {path}" if path else None)


def evaluate_targets(benches: Mapping[str, Mapping[str, Any]]) -> list[Target]:
    """The issue's targets, each from the figures of ``benches`` (one run's results, keyed by benchmark name)."""
    fit = benches.get("fit_latency")
    ray = benches.get("ray_overhead")
    warm = benches.get("warm_start")
    remote = benches.get("remote_overhead")
    pack = benches.get("archive_speed")
    logs = benches.get("log_latency")
    targets: list[Target] = []

    fit_first = pick(fit, "fit_to_first_line_s")
    targets.append(
        _at_most(
            "fit() -> first line of a trivial script",
            fit_first,
            0.15,
            "s",
            baseline_what="python train.py",
            baseline=pick(fit, "python_direct_first_line_s"),
            missing=_why_missing(benches, "fit_latency"),
        )
    )

    # Ray Jobs vs our fit(), both from ray_overhead (interleaved, same machine state); our fit() from fit_latency
    # where ray_overhead did not measure it
    ray_first = pick(ray, "fit_to_first_line_s.ray_job_submission")
    ours = pick(ray, "fit_to_first_line_s.local")
    ours_from = "interleaved in ray_overhead"
    if ours is None:
        ours, ours_from = fit_first, "fit_latency"
    times_faster = _ratio(ours, ray_first)
    targets.append(
        Target(
            what="fit() -> first line vs Ray Jobs submit -> first line",
            target=">= 8.0x faster",
            measured=times_faster,
            unit="x",
            met=times_faster is not None and times_faster >= 8.0,
            baseline=f"Ray Jobs {_fmt(ray_first, 's')}" if ray_first is not None else None,
            ratio=times_faster,
            note=(
                f"ours {_fmt(ours, 's')} ({ours_from})"
                if times_faster is not None
                else _why_missing(benches, "ray_overhead", "fit_latency")
            ),
        )
    )

    not_forked = ("off", "spawn", "fresh", "cold", "first_job", "heavy", "sklearn", "xgboost", "torch", "ratio")
    warm_first, warm_key = _exact_or_guess(warm, WARM_FORKED_PATHS, include=("fork",), exclude=not_forked, unit="s")
    warm_off, _ = _exact_or_guess(
        warm, WARM_OFF_PATHS, include=("off",), exclude=("heavy", "sklearn", "xgboost", "torch", "ratio"), unit="s"
    )
    targets.append(
        _at_most(
            "warm fit() -> first line (keep-alive)",
            warm_first,
            0.05,
            "s",
            baseline_what="warm, TRAINFORGE_WARM_FORK=off",
            baseline=warm_off,
            missing=_why_missing(benches, "warm_start"),
            note=warm_key,
        )
    )

    direct = pick(remote, "direct_call_s")
    for kind, limit in (("warm", 0.05), ("cold", 0.3)):
        targets.append(
            _at_most(
                f"@remote no-op round trip, {kind}",
                pick(remote, f"{kind}_round_trip_s"),
                limit,
                "s",
                baseline_what="direct call",
                baseline=direct,
                missing=_why_missing(benches, "remote_overhead"),
            )
        )

    reading = ("read", "extract", "ratio", "x_today")
    today, today_key = _exact_or_guess(
        pack, PACK_TODAY_PATHS, include=("tarfile",), exclude=(*reading, "ours", "archives"), unit="MiB/s"
    )
    ours_mib, ours_key = _exact_or_guess(
        pack, PACK_OURS_PATHS, include=("archives",), exclude=reading, unit="MiB/s", choose=max
    )
    if ours_mib is None:
        ours_mib, ours_key = _exact_or_guess(pack, (), include=("ours",), exclude=reading, unit="MiB/s", choose=max)
    pack_ratio = float(f"{ours_mib / today:.3g}") if ours_mib is not None and today else None
    # "still gzip": where the bench checked its archive (gzip -t, tar tzf), every check must have passed
    checks = (pack or {}).get("ours_archive_verified")
    gzip_ok = all(checks.values()) if isinstance(checks, Mapping) else True
    pack_notes = [key for key in (today_key, ours_key) if key]
    if not gzip_ok:
        pack_notes.append(f"our archive failed a gzip check: {dict(checks or {})}")
    others = [
        f"{label} {_fmt(value, 'MiB/s')}"
        for label, value in (
            ("tar | gzip -1", pick(pack, "write_mib_s.tar_gzip1")),
            ("tar | zstd -1", pick(pack, "write_mib_s.tar_zstd1")),
            ("plain tar", pick(pack, "write_mib_s.tar")),
        )
        if value is not None
    ]
    targets.append(
        Target(
            what="model.tar.gz of 256 MiB float32 weights (standard gzip)",
            target=f">= {_fmt(10 * today, 'MiB/s')} (10x today's)" if today else ">= 10x today's tarfile zlib-1",
            measured=ours_mib,
            unit="MiB/s",
            met=pack_ratio is not None and pack_ratio >= 10.0 and gzip_ok,
            baseline=("; ".join([f"tarfile zlib-1 {_fmt(today, 'MiB/s')}", *others]) if today is not None else None),
            ratio=pack_ratio,
            note=("; ".join(pack_notes) or None) if pack_ratio is not None else _why_missing(benches, "archive_speed"),
        )
    )

    targets.append(
        _at_most(
            "print -> line visible in fit(), p95",
            pick(logs, "p95_ms"),
            30.0,
            "ms",
            missing=_why_missing(benches, "log_latency"),
        )
    )
    return targets


@dataclass(frozen=True)
class Figure:
    """A figure the issue asks to show that has no target: what it is, its value, what it was measured beside."""

    what: str
    measured: str
    baseline: str | None = None


def _figure(
    what: str, value: float | None, unit: str, baseline: str | None = None, fmt: Callable[[float], str] | None = None
) -> Figure | None:
    if value is None:
        return None
    return Figure(what, fmt(value) if fmt else _fmt(value, unit), baseline)


def _labelled(label: str, value: float | None, unit: str) -> str | None:
    return f"{label} {_fmt(value, unit)}" if value is not None else None


def other_figures(benches: Mapping[str, Mapping[str, Any]]) -> list[Figure]:
    """API submit rate, environment reuse and the supervisor start, where those benchmarks ran."""
    api = benches.get("api_load")
    sqlite = next(
        (r for r in (api or {}).get("results", []) if isinstance(r, Mapping) and r.get("database") == "sqlite"), None
    )
    env = benches.get("env_build")
    sklearn = (env or {}).get("trainforge/sklearn:1.2-1")
    sklearn_env = sklearn if isinstance(sklearn, Mapping) else None
    raw = pick(sqlite, "raw_insert.jobs_one_tx_each_per_s")
    sup = benches.get("supervisor_start")
    found = [
        _figure(
            "API submits/s, 20 clients (SQLite)",
            pick(sqlite, "submit.per_s"),
            "/s",
            f"raw SQLite inserts {raw:.0f}/s" if raw is not None else None,
            fmt=lambda v: f"{v:.0f}/s",
        ),
        _figure("API describe p99 (SQLite)", pick(sqlite, "describe.p99_ms"), "ms"),
        _figure(
            "a job in the sklearn image, its environment reused: time added to fit()",
            pick(env, "job_fit_s.added_by_warm_reuse_s"),
            "s",
            ", ".join(
                f"{label} {value}"
                for label, value in (
                    ("environment step, warm", _fmt(pick(sklearn_env, "warm_ms"), "ms")),
                    ("cold build", _fmt(pick(sklearn_env, "cold_s"), "s")),
                )
                if not value.startswith("—")
            )
            or None,
        ),
        _figure(
            "supervisor start -> its first line, forked by the launcher",
            pick(sup, "supervisor_fork_to_first_line_s"),
            "s",
            _labelled("spawned", pick(sup, "supervisor_spawn_to_first_line_s"), "s"),
        ),
        _figure(
            "fit() -> first line, launcher on",
            pick(sup, "fit_to_first_line_launcher_s"),
            "s",
            _labelled("TRAINFORGE_LAUNCHER=off", pick(sup, "fit_to_first_line_spawn_s"), "s"),
        ),
        _figure(
            "@remote warm round trip, TRAINFORGE_WARM_FORK=off",
            pick(benches.get("remote_overhead"), "warm_fork_off_round_trip_s"),
            "s",
            _labelled("forked", pick(benches.get("remote_overhead"), "warm_round_trip_s"), "s"),
        ),
    ]
    return [figure for figure in found if figure is not None]


# --- the machine, the report and the README's table ---------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, memory, OS, Python, date (UTC), the git commit and the
    1-minute load average at the start (other work on the machine slows every figure)."""
    cpu = platform.processor() or platform.machine()
    memory_gib: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        os_name = f"{release.get('PRETTY_NAME', '').strip(chr(34))} (Linux {platform.release()})"
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": os_name,
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or None,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def machine_line(machine: Mapping[str, Any]) -> str:
    """One sentence naming the machine and the date of a report."""
    return (
        f"Measured by `python bench/run_all.py` on {str(machine.get('date', '?'))[:10]}"
        f" (commit {machine.get('commit') or '?'}): {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores,"
        f" {machine.get('memory_gib', '?')} GiB, {machine.get('os', '?')}, Python {machine.get('python', '?')}"
        + (f"; load average {load:g} at the start." if (load := machine.get("load_avg_1m_at_start")) else ".")
    )


def _times(ratio: float) -> str:
    """A ratio for reading: three significant digits, whole thousands without an exponent (``28,700``)."""
    return f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.3g}"


def pretty(text: object) -> str:
    """A target's ASCII text as the README shows it: ``->`` as an arrow, ``<=``/``>=`` as signs, ``fit()`` and
    ``@remote`` as code."""
    out = str(text)
    for ascii_, shown in (("->", "→"), ("<=", "≤"), (">=", "≥"), ("fit()", "`fit()`"), ("@remote", "`@remote`")):
        out = out.replace(ascii_, shown)
    out = out.replace("model.tar.gz", "`model.tar.gz`")
    return out


def _row(*cells: object) -> str:
    """One Markdown table row; a ``|`` inside a cell (``tar | gzip``) is escaped, a line break becomes a space."""
    return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def render_table(report: Mapping[str, Any]) -> str:
    """The README's Markdown block for ``report``: the machine line, the targets table and the other figures."""
    rows = [
        machine_line(report.get("machine", {})),
        "",
        "| What | Target | Measured | Side by side (same run) | Met |",
        "|---|---|---|---|---|",
    ]
    for target in report.get("targets", []):
        measured = _fmt(target.get("measured"), target.get("unit", ""))
        if target.get("measured") is None and target.get("note"):
            note = str(target["note"])
            measured = f"— ({note if len(note) <= 160 else note[:157] + '...'})"
        side = target.get("baseline") or "—"
        ratio = target.get("ratio")
        if target.get("unit") != "x" and ratio:
            side += f" (ours {_times(ratio)}x faster)" if ratio >= 1 else f" (ours {_times(1 / ratio)}x slower)"
        elif target.get("unit") == "x" and target.get("measured") is not None and target.get("note"):
            side += f"; {target['note']}"
        met = "yes" if target.get("met") else "no"
        rows.append(_row(pretty(target.get("what")), pretty(target.get("target")), measured, side, met))
    figures = report.get("figures", [])
    if figures:
        rows += ["", "| Also measured | Value | Side by side |", "|---|---|---|"]
        rows += [_row(pretty(f.get("what")), f.get("measured"), f.get("baseline") or "—") for f in figures]
    return "\n".join(rows)


def rewrite_readme(text: str, block: str) -> str:
    """``text`` with what lies between the bench markers replaced by ``block`` (the markers stay).

    Raises:
        ValueError: the markers are missing, repeated or out of order (the message says which).
    """
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise ValueError(f"README.md needs exactly one {README_START!r} and one {README_END!r} line")
    head, rest = text.split(README_START, 1)
    if README_END not in rest:
        raise ValueError(f"README.md: {README_END!r} comes before {README_START!r}")
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{block.strip()}\n{README_END}{tail}"


def build_report(machine: Mapping[str, Any], benches: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON report: the machine, every benchmark's result, the targets and the other figures."""
    return {
        "machine": dict(machine),
        "benches": {name: dict(result) for name, result in benches.items()},
        "targets": [asdict(target) for target in evaluate_targets(benches)],
        "figures": [asdict(figure) for figure in other_figures(benches)],
    }


def select(only: str | None) -> list[Bench]:
    """The benchmarks to run: the default ones, or those ``only`` names (comma-separated), in the registry's order.

    Raises:
        ValueError: ``only`` names a benchmark that is not in the registry (the message lists the known ones).
    """
    if only is None:
        return [bench for bench in BENCHES if bench.default]
    names = [name.strip() for name in only.split(",") if name.strip()]
    known = {bench.name for bench in BENCHES}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"--only: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(sorted(known))}")
    return [bench for bench in BENCHES if bench.name in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated benchmark names (default: every one the issue names)")
    parser.add_argument("--runs", type=int, help="runs per benchmark, for every one that takes --runs")
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's table between the bench markers")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs: must be at least 1")
    try:
        benches = select(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    readme = ROOT / "README.md"
    if args.readme:
        try:
            rewrite_readme(readme.read_text(), "")
        except (OSError, ValueError) as exc:  # fail before minutes of benchmarks, not after
            parser.error(f"--readme: {exc}")

    machine = machine_info()
    results: dict[str, dict[str, Any]] = {}
    for bench in benches:
        print(f"[run_all] {bench.name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[bench.name] = run_bench(bench, args.runs)
        outcome = results[bench.name].get("error", "ok")
        print(f"[run_all] {bench.name}: {outcome} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    report = build_report(machine, results)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    if args.readme:
        readme.write_text(rewrite_readme(readme.read_text(), render_table(report)))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
