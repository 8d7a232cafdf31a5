"""The forkserver's parts: which commands fork, the sandbox slot's moves, and a real zygote forking real scripts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.wait import wait_for
from trainforge.runtime.forkserver import (
    ChildLimits,
    ForkedChild,
    ForkTarget,
    Slot,
    WarmForks,
    Zygote,
    ZygotePlan,
    ZygoteShape,
    fork_target,
)

PY = "/env/bin/python"


def test_script_and_module_commands_fork() -> None:
    assert fork_target([PY, "train.py", "--lr", "1"], PY) == ForkTarget(["train.py", "--lr", "1"])
    assert fork_target([PY, "-m", "pkg.main", "a"], PY) == ForkTarget(["-m", "a"], module="pkg.main")


@pytest.mark.parametrize(
    ("cmd", "why"),
    [
        (["/other/python", "train.py"], "does not start with the environment's python"),
        (["/bin/sh", "-c", "./run.sh"], "does not start with the environment's python"),
        ([PY], "runs no script"),
        ([PY, "-m"], "without a module"),
        ([PY, "-m", "torch.distributed.run", "train.py"], "distributed launcher"),
        ([PY, "-u", "train.py"], "interpreter options"),
    ],
)
def test_other_commands_start_a_fresh_interpreter(cmd: list[str], why: str) -> None:
    reason = fork_target(cmd, PY)
    assert isinstance(reason, str) and why in reason


def _job_tree(root: Path) -> Path:
    opt_ml = root / "opt" / "ml"
    for rel, text in {
        "input/config/hyperparameters.json": "{}",
        "input/data/train/a.csv": "1,2",
        "code/train.py": "print(1)",
        "model/.keep": "",
    }.items():
        (opt_ml / rel).parent.mkdir(parents=True, exist_ok=True)
        (opt_ml / rel).write_text(text)
    return opt_ml


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_slot_takes_a_jobs_tree_and_gives_it_back_with_what_the_job_wrote(tmp_path: Path) -> None:
    slot = Slot(tmp_path / "slot")
    slot.prepare()
    opt_ml = _job_tree(tmp_path / "job")
    before = _files(opt_ml)
    config_dir = slot.opt_ml / "input" / "config"
    slot.move_in(opt_ml)
    assert _files(opt_ml) == {}
    assert _files(slot.opt_ml) == before
    assert (slot.opt_ml / "input" / "config").samefile(config_dir)  # the fixed (bound) directories stay
    (slot.opt_ml / "model" / "model.bin").write_text("weights")
    (slot.opt_ml / "new-dir").mkdir()
    (slot.tmp / "scratch").write_text("left in /tmp")
    slot.move_out(opt_ml)
    assert _files(opt_ml) == {**before, "model/model.bin": "weights"}
    assert (opt_ml / "new-dir").is_dir()
    assert _files(slot.opt_ml) == {} and list(slot.tmp.iterdir()) == []
    assert sorted(p.name for p in (slot.opt_ml / "input").iterdir()) == ["config", "data"]


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    plan = ZygotePlan(
        ZygoteShape(sys.executable, False, True, ("json", "no_such_module_xyz")), {"PATH": "/usr/bin:/bin"}
    )
    z = Zygote.start(plan, None)
    try:
        assert z.wait_ready()
        yield z
    finally:
        z.close()


def _fork(zygote: Zygote, code: Path, args: list[str], env: dict[str, str]) -> tuple[int, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    child = ForkedChild(
        zygote,
        ForkTarget(args),
        env=env,
        cwd=str(code),
        sink=lambda stream, line: lines.append((stream, line)),
        limits=ChildLimits(),
    )
    child.start()
    rc = child.wait(30)
    assert rc is not None
    child.finish()
    return rc, lines


def test_a_real_zygote_forks_jobs_that_see_only_their_own_state(zygote: Zygote, tmp_path: Path) -> None:
    assert zygote.imported == ["json"] and "no_such_module_xyz" in zygote.failed
    code = tmp_path / "code"
    code.mkdir()
    (code / "job.py").write_text(
        "import os, sys, threading, json\n"
        "os.environ['LEAK'] = '1'\n"
        "threading.Thread(target=__import__('time').sleep, args=(60,), daemon=True).start()\n"
        "print(json.dumps([sys.argv, sys.path[0], 'LEAK' in os.environ, os.environ.get('MINE'),"
        " len(os.listdir('/proc/self/task'))]))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "MINE": "x"}
    rc, first = _fork(zygote, code, ["job.py", "--a", "1"], env)
    rc2, second = _fork(zygote, code, ["job.py"], {**env, "MINE": "y"})
    assert rc == rc2 == 0
    assert first == [("stdout", f'[["job.py", "--a", "1"], "{code}", true, "x", 2]')]
    assert second == [("stdout", f'[["job.py"], "{code}", true, "y", 2]')]  # no thread or LEAK from the first


def test_exit_codes_and_tracebacks_are_those_of_a_fresh_python(zygote: Zygote, tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("def f():\n    raise KeyError('k')\nf()\n")
    (tmp_path / "three.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "msg.py").write_text("import sys\nsys.exit('bye')\n")
    env = {"PATH": "/usr/bin:/bin"}
    rc, lines = _fork(zygote, tmp_path, ["boom.py"], env)
    assert rc == 1
    assert lines[0][1] == "Traceback (most recent call last):"
    assert 'boom.py", line 3, in <module>' in lines[1][1] and lines[-1] == ("stderr", "KeyError: 'k'")
    assert _fork(zygote, tmp_path, ["three.py"], env)[0] == 3
    assert _fork(zygote, tmp_path, ["msg.py"], env) == (1, [("stderr", "bye")])


def test_a_stopped_fork_is_terminated_then_killed(zygote: Zygote, tmp_path: Path) -> None:
    (tmp_path / "stubborn.py").write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    lines: list[str] = []
    child = ForkedChild(
        zygote,
        ForkTarget(["stubborn.py"]),
        env={"PATH": "/usr/bin:/bin"},
        cwd=str(tmp_path),
        sink=lambda _s, line: lines.append(line),
        limits=ChildLimits(),
    )
    child.start()
    wait_for(lambda: lines, what="the child's first line")
    assert child.wait(0) is None
    assert child.stop(0.5) == -9
    child.finish()


def test_warm_forks_refuse_other_shapes_and_say_why(tmp_path: Path) -> None:
    forks = WarmForks(tmp_path, enabled=False)
    shape = ZygoteShape(sys.executable, False, True, ())
    assert forks.refusal(shape, hosts=1, writable_binds=False) == "TRAINFORGE_WARM_FORK=off"
    forks = WarmForks(tmp_path)
    assert "no forkserver" in (forks.refusal(shape, hosts=1, writable_binds=False) or "")
    forks.after_job(ZygotePlan(shape, {"PATH": "/usr/bin:/bin"}))
    try:
        assert forks.refusal(shape, hosts=1, writable_binds=False) is None
        other = ZygoteShape("/elsewhere/python", False, True, ())
        assert "python changed" in (forks.refusal(other, hosts=1, writable_binds=False) or "")
        isolated = ZygoteShape(sys.executable, False, False, ())
        assert "network" in (forks.refusal(isolated, hosts=1, writable_binds=False) or "")
        assert forks.refusal(shape, hosts=2, writable_binds=False) == "a multi-host job"
    finally:
        forks.close()
