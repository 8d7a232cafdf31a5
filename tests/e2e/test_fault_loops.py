"""Fault loops: nothing lost or doubled while the server, or supervisors, are SIGKILLed at random moments.

One server for the module (SQLite home, the session's image environments, CPU oversubscription high enough to run
every job at once) with three users besides the admin. Each loop draws its moments from ``random.Random(seed)``;
the seed is printed (a failing run's captured output shows it) and ``TRAINFORGE_FAULT_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.faults import (
    all_events,
    lose_host,
    numbered_script,
    release,
    script_job,
    supervisors,
    upload_source,
)
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.storage import LocalObjectStore

USERS = ("alice", "bob", "carol")
TERMINAL = {"Completed", "Failed", "Stopped"}


def _seed() -> int:
    """The loop's seed: ``TRAINFORGE_FAULT_SEED`` or a fresh one, printed so that a failure can be replayed."""
    seed = int(os.environ.get("TRAINFORGE_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"fault loop seed: {seed} (replay with TRAINFORGE_FAULT_SEED={seed})")
    return seed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Team:
    """The module's server and its users' tokens (``admin`` is the home token)."""

    srv: ServerProcess
    tokens: dict[str, str]

    def api(self, user: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=30)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[Team]:
    home = tmp_path_factory.mktemp("faults") / "tfhome"
    env = {
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        "TRAINFORGE_PORT": str(_free_port()),  # clients and supervisors find the restarted server where it was
        "TRAINFORGE_LOCAL_CPU_OVERSUBSCRIPTION": "200",
        "TRAINFORGE_STOP_GRACE_SECONDS": "3",
        "TRAINFORGE_SYSTEM_METRICS_INTERVAL_SECONDS": "0",
    }
    srv = ServerProcess(home, extra_env=env).start()
    try:
        tokens = {"admin": srv.token}
        cli_env = {**srv.env, "TRAINFORGE_ENDPOINT": srv.url, "TRAINFORGE_TOKEN": srv.token}
        for user in USERS:
            out = subprocess.run(
                [sys.executable, "-m", "trainforge.cli", "users", "create", user, "--output", "json"],
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            tokens[user] = json.loads(out.stdout)["Token"]
            subprocess.run(
                [sys.executable, "-m", "trainforge.cli", "roles", "grant", "TrainforgeExecutionRole", user],
                env=cli_env,
                capture_output=True,
                timeout=60,
                check=True,
            )
        yield Team(srv, tokens)
    finally:
        srv.kill()
        kill_supervisors(home)


def server_check(srv: ServerProcess) -> None:
    """``trainforge server check`` on the server's home passes (exit 0)."""
    out = subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "server", "check"],
        env=srv.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"server check failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"


def numbered_by_attempt(events: list[dict[str, Any]]) -> dict[tuple[int, str], list[int]]:
    """The ``n=<i>`` numbers of each (attempt, host) in the order stored; asserts each host's sequence numbers
    strictly increase within an attempt (no line stored twice)."""
    numbers: dict[tuple[int, str], list[int]] = {}
    last_seq: dict[tuple[int, str], int] = {}
    for e in events:
        key = (int(e.get("attempt", 1)), str(e["host"]))
        assert e["seq"] > last_seq.get(key, -1), f"seq {e['seq']} of {key} stored after {last_seq.get(key)}"
        last_seq[key] = e["seq"]
        if e["message"].startswith("n="):
            numbers.setdefault(key, []).append(int(e["message"][2:]))
    return numbers


def wait_terminal(team: Team, names: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Describe every job once all are terminal."""
    with team.api() as c:

        def done() -> dict[str, dict[str, Any]] | None:
            described = {n: c.get(f"/v1/training-jobs/{n}").json() for n in names}
            return described if all(d["TrainingJobStatus"] in TERMINAL for d in described.values()) else None

        result: dict[str, dict[str, Any]] = wait_for(done, timeout=timeout, interval=0.5, what="every job terminal")
        return result


# -- server SIGKILL loop ----------------------------------------------------------------------------------------


@dataclass
class Planned:
    """One job of a loop and what it must end as."""

    name: str
    user: str
    kind: str  # "ok" | "fail" | "stop"
    lines: int
    body: dict[str, Any]
    checkpoint_every: int = 0
    instances: int = 1


def _plan_server_loop(team: Team, rng: random.Random) -> list[Planned]:
    kinds = ["fail"] * 10 + ["stop"] * 6 + ["ok"] * 34
    rng.shuffle(kinds)
    plans: list[Planned] = []
    multi_left = 4
    for i, kind in enumerate(kinds):
        name = f"srvkill-{i:02d}"
        user = USERS[i % len(USERS)]
        instances = 1
        if kind == "ok" and multi_left:
            instances, multi_left = 2, multi_left - 1
        lines = 4000 if kind == "stop" else rng.randint(20, 60)
        every = 10 if instances == 1 and kind != "stop" and rng.random() < 0.6 else 0
        script = numbered_script(
            lines,
            sleep_s=0.03 if kind == "stop" else rng.uniform(0.03, 0.1),
            checkpoint_every=every,
            fail=f"boom-{name}" if kind == "fail" else None,
        )
        uri = upload_source(team.srv.home, name, script)
        body = script_job(name, uri, checkpoint=bool(every), instances=instances)
        plans.append(Planned(name, user, kind, lines, body, every, instances))
    return plans


def _submit_all(team: Team, plans: list[Planned], seed: int, errors: list[str]) -> None:
    """Submit ``plans`` in order with random gaps, retrying each through server restarts (a resubmitted identical
    spec returns the job already recorded)."""
    rng = random.Random(seed)
    for plan in plans:
        time.sleep(rng.uniform(0, 0.6))
        deadline = time.monotonic() + 60
        while True:
            try:
                with team.api(plan.user) as c:
                    r = c.post("/v1/training-jobs", json=plan.body)
                if r.status_code != 200:
                    errors.append(f"{plan.name}: {r.status_code} {r.text}")
                break
            except (httpx.TransportError, OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    errors.append(f"{plan.name}: never accepted")
                    break
                time.sleep(0.1)


def test_sigkill_the_server_at_random_moments_while_fifty_jobs_run(team: Team) -> None:
    seed = _seed()
    rng = random.Random(seed)
    plans = _plan_server_loop(team, rng)
    by_user = {u: [p for p in plans if p.user == u] for u in USERS}
    errors: list[str] = []
    threads = [
        threading.Thread(target=_submit_all, args=(team, by_user[u], seed + k + 1, errors), daemon=True)
        for k, u in enumerate(USERS)
    ]
    for t in threads:
        t.start()
    stop_sent: set[str] = set()
    kills = 0
    while kills < 12:
        time.sleep(rng.uniform(0.3, 2.5))
        if kills >= 6:  # stop the long jobs once they have run through a few restarts
            with team.api() as c:
                for p in plans:
                    if p.kind == "stop" and p.name not in stop_sent:
                        d = c.get(f"/v1/training-jobs/{p.name}")
                        if d.status_code == 200 and d.json()["SecondaryStatus"] == "Training":
                            with team.api(p.user) as owner:
                                assert owner.post(f"/v1/training-jobs/{p.name}/stop").status_code == 200
                            stop_sent.add(p.name)
        team.srv.kill()
        kills += 1
        time.sleep(rng.uniform(0, 0.5))
        team.srv.start()
    for t in threads:
        t.join(timeout=90)
    assert not errors, errors
    with team.api() as c:  # stop the long jobs that had not reached Training while the loop ran
        for p in plans:
            late = p.kind == "stop" and p.name not in stop_sent
            if late and c.get(f"/v1/training-jobs/{p.name}").json()["TrainingJobStatus"] not in TERMINAL:
                with team.api(p.user) as owner:
                    assert owner.post(f"/v1/training-jobs/{p.name}/stop").status_code == 200
    described = wait_terminal(team, [p.name for p in plans], timeout=120)

    problems = _server_loop_problems(team, plans, described)
    assert not problems, f"seed {seed}: {len(problems)} problem(s):\n" + "\n".join(problems)
    print(f"server kills: {kills}; jobs: {len(plans)}")
    server_check(team.srv)


def _server_loop_problems(team: Team, plans: list[Planned], described: dict[str, dict[str, Any]]) -> list[str]:
    """What differs from the plan, every job checked: status, owner, FailureReason, each host's numbered lines
    (whole and in order; a stopped job's a gap-free prefix) and a checkpointing job's stored checkpoints."""
    expected = {"ok": "Completed", "fail": "Failed", "stop": "Stopped"}
    store = LocalObjectStore(team.srv.home / "storage")
    problems: list[str] = []
    with team.api() as c:
        for p in plans:
            d = described[p.name]
            if d["TrainingJobStatus"] != expected[p.kind]:
                problems.append(
                    f"{p.name}: {d['TrainingJobStatus']} ({d.get('FailureReason')}), not {expected[p.kind]}"
                )
                continue
            if d["CreatedBy"] != {"UserProfileName": p.user}:
                problems.append(f"{p.name}: CreatedBy {d['CreatedBy']}, not {p.user}")
            numbers = numbered_by_attempt(all_events(c, p.name))
            hosts = [f"algo-{h + 1}" for h in range(p.instances)]
            for host in hosts:
                got = numbers.get((1, host), [])
                whole = got == list(range(len(got))) if p.kind == "stop" else got == list(range(p.lines))
                if not whole:
                    problems.append(f"{p.name} {host}: {len(got)} numbered lines {got[:8]}..., expected {p.lines}")
            if sorted(numbers) != [(1, h) for h in hosts] and p.kind != "stop":
                problems.append(f"{p.name}: lines of {sorted(numbers)}, expected attempt 1 of {hosts}")
            if p.kind == "fail" and f'ErrorMessage "boom-{p.name}"' not in d["FailureReason"]:
                problems.append(f"{p.name}: FailureReason {d['FailureReason']!r} lacks its error")
            if p.checkpoint_every:
                last = (p.lines - 1) // p.checkpoint_every * p.checkpoint_every
                prefix = f"s3://trainforge-default/{p.name}/checkpoints/"
                saved = {o.key.rsplit("/", 1)[-1] for o in store.list(prefix)}
                want = {"step.txt"} | {f"ckpt-{i}.txt" for i in range(0, p.lines, p.checkpoint_every)}
                if saved != want or store.get_bytes(prefix + "step.txt") != str(last).encode():
                    problems.append(f"{p.name}: checkpoints {sorted(saved)}, expected {sorted(want)} (step {last})")
    return problems


# -- supervisor SIGKILL loop under MaximumRetryAttempts=2 --------------------------------------------------------

RETRIES = 2
SUP_LINES = 50


def test_sigkill_supervisors_at_random_moments_under_two_retries(team: Team) -> None:
    seed = _seed()
    rng = random.Random(seed + 1)
    losses = [0, 1, 2, 3] * 3
    rng.shuffle(losses)
    plans: dict[str, tuple[int, str, int]] = {}  # name -> (times its host is lost, which host, instances)
    for i, lost in enumerate(losses):
        name = f"supkill-{i:02d}"
        instances = 2 if i % 4 == 1 else 1
        host = f"algo-{rng.randint(1, instances)}"
        # Each script holds after its last line until released, so a host planned to be lost is lost while it runs,
        # however slow the machine; a job is released once its planned losses are done.
        script = numbered_script(SUP_LINES, sleep_s=0.08, checkpoint_every=10, hold=True)
        body = script_job(
            name, upload_source(team.srv.home, name, script), checkpoint=True, retries=RETRIES, instances=instances
        )
        with team.api(USERS[i % len(USERS)]) as c:
            assert c.post("/v1/training-jobs", json=body).status_code == 200
        plans[name] = (lost, host, instances)

    killed: dict[str, list[int]] = {name: [] for name in plans}
    due_at: dict[int, float] = {}  # a supervisor running its code -> when to lose its host
    deadline = time.monotonic() + 180
    checked = time.monotonic()
    while any(len(killed[n]) < lost for n, (lost, _, _) in plans.items()):
        now = time.monotonic()
        assert now < deadline, f"could not lose every planned host: {killed}"
        for sup in supervisors(team.srv.home):
            lost, host, _ = plans.get(sup.job, (0, "", 0))
            if len(killed[sup.job]) >= lost:
                release(sup)
                continue
            if sup.host != host or not sup.code_running or sup.pid in killed[sup.job]:
                continue
            if now >= due_at.setdefault(sup.pid, now + rng.uniform(0, 1.2)):
                lose_host(sup)
                killed[sup.job].append(sup.pid)
        if now - checked > 2:  # a job that ended before its planned losses would make this loop wait in vain
            checked = now
            with team.api() as c:
                for name, (lost, _, _) in plans.items():
                    if len(killed[name]) < lost:
                        d = c.get(f"/v1/training-jobs/{name}").json()
                        assert d["TrainingJobStatus"] not in TERMINAL, (
                            f"seed {seed}: {name} ended {d['TrainingJobStatus']} after {len(killed[name])} of its "
                            f"{lost} planned host losses: {d.get('FailureReason')} "
                            f"{[(t['Status'], t.get('StatusMessage')) for t in d['SecondaryStatusTransitions']]}"
                        )
        time.sleep(0.05)

    while time.monotonic() < deadline:  # let every attempt still holding finish
        holding = [sup for sup in supervisors(team.srv.home) if sup.job in plans]
        if not holding:
            break
        for sup in holding:
            release(sup)
        time.sleep(0.2)
    described = wait_terminal(team, list(plans), timeout=120)
    problems = _retry_loop_problems(team, plans, described)
    assert not problems, f"seed {seed}: {len(problems)} problem(s):\n" + "\n".join(problems)
    print(f"hosts lost: {sum(len(v) for v in killed.values())} across {len(plans)} jobs")
    server_check(team.srv)


def _retry_loop_problems(
    team: Team, plans: dict[str, tuple[int, str, int]], described: dict[str, dict[str, Any]]
) -> list[str]:
    """What differs from the plan: a job whose host was lost at most ``RETRIES`` times Completed through as many
    ``Restarting`` transitions, its last attempt's lines whole on every host; one lost more often Failed, with
    ``Interrupted`` in its history and a FailureReason naming the host; every attempt's lines a gap-free prefix."""
    problems: list[str] = []
    with team.api() as c:
        for name, (lost, host, instances) in plans.items():
            d = described[name]
            statuses = [t["Status"] for t in d["SecondaryStatusTransitions"]]
            numbers = numbered_by_attempt(all_events(c, name))
            for (attempt, on), got in sorted(numbers.items()):
                if got != list(range(len(got))):
                    problems.append(f"{name} attempt {attempt} {on}: lines {got[:8]}... ({len(got)}) not 0, 1, 2, ...")
            final = max((a for a, _ in numbers), default=0)
            restarts = statuses.count("Restarting")
            if lost <= RETRIES:
                if d["TrainingJobStatus"] != "Completed" or restarts != lost or final != lost + 1:
                    problems.append(
                        f"{name}: host lost {lost}x: {d['TrainingJobStatus']} after {restarts} restarts, last attempt "
                        f"with lines {final} ({d.get('FailureReason')}; {statuses})"
                    )
                for k in range(instances):
                    if numbers.get((final, f"algo-{k + 1}")) != list(range(SUP_LINES)):
                        problems.append(f"{name}: attempt {final} algo-{k + 1} lines incomplete")
            else:
                if d["TrainingJobStatus"] != "Failed" or "Interrupted" not in statuses or restarts != RETRIES:
                    problems.append(
                        f"{name}: host lost {lost}x: {d['TrainingJobStatus']}, {restarts} restarts, {statuses}"
                    )
                if host not in (d.get("FailureReason") or ""):
                    problems.append(f"{name}: FailureReason does not name {host}: {d.get('FailureReason')!r}")
    return problems
