"""The bwrap command line (its order matters), real bubblewrap runs of it, and the choice and effect of the limits
(cgroup v2, v1, rlimits) over fake and, where the machine allows, real cgroup trees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainforge.runtime.limits import GIB, Limits, format_gib, own_cgroups, rlimit_limits, select_limits
from trainforge.runtime.sandbox import SandboxSpec, bwrap_args, minimal, probe, sandboxed

BWRAP = probe()
needs_bwrap = pytest.mark.skipif(not BWRAP.available, reason=f"bubblewrap does not work here: {BWRAP.reason}")


# The test's own interpreter, re-exposed as the supervisor exposes a job's (a checkout on CI lives under /tmp).
INTERPRETER = [Path(sys.prefix), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]


def spec_in(tmp_path: Path, **kwargs: object) -> SandboxSpec:
    opt_ml = tmp_path / "home/jobs/j/algo-1/opt/ml"
    for sub in ("code", "model", "input/config", "input/data/train"):
        (opt_ml / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "sbx-tmp").mkdir(exist_ok=True)
    kwargs["expose"] = [*kwargs.get("expose", []), *INTERPRETER]  # type: ignore[misc]
    return SandboxSpec(opt_ml=opt_ml, tmp=tmp_path / "sbx-tmp", **kwargs)  # type: ignore[arg-type]


def tmp_mount_points(paths: list[Path]) -> list[str]:
    """The first components under ``/tmp`` of ``paths``: the empty mount points a private /tmp shows for them."""
    return sorted({p.parts[2] for p in paths if p.parts[:2] == ("/", "tmp") and len(p.parts) > 2})


def pairs(args: list[str], flag: str) -> list[tuple[str, ...]]:
    width = 3 if flag in ("--ro-bind", "--bind", "--dev-bind", "--symlink") else 2
    return [tuple(args[i + 1 : i + width]) for i, a in enumerate(args) if a == flag]


def test_minimal_keeps_only_outermost_paths() -> None:
    assert minimal([Path("/a/b"), Path("/a"), Path("/c/d"), Path("/ab")]) == [Path("/a"), Path("/ab"), Path("/c/d")]


def test_argument_order_hides_then_reexposes_then_binds_opt_ml_and_channels(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = home / "envs" / "py"
    venv.mkdir(parents=True)
    store_dir = home / "storage" / "b" / "p"
    store_dir.mkdir(parents=True)
    spec = spec_in(
        tmp_path,
        hidden=[home, home / "storage"],
        expose=[venv, Path("/usr/lib"), tmp_path / "missing"],
        channels={"train": store_dir},
        network=False,
        drop_caps=True,
    )
    args = bwrap_args("/usr/bin/bwrap", spec)
    assert args[:4] == ["/usr/bin/bwrap", "--ro-bind", "/", "/"] or "--ro-bind" in args
    assert args[-3:] == ["--chdir", "/opt/ml/code", "--"]
    for flag in ("--unshare-pid", "--unshare-ipc", "--die-with-parent", "--unshare-net"):
        assert flag in args
    assert "--new-session" not in args  # the supervisor's SIGTERM must reach the job's process group
    assert args[args.index("--cap-drop") + 1] == "ALL"
    assert pairs(args, "--bind")[0] == (str(spec.tmp), "/tmp")
    tmpfs = pairs(args, "--tmpfs")
    if str(home).startswith("/tmp/"):
        assert (str(home),) not in tmpfs  # already covered by the private /tmp
    else:
        assert tmpfs.count((str(home),)) == 1  # the storage below it is covered already
    ro = pairs(args, "--ro-bind")
    assert (str(venv), str(venv)) in ro  # re-exposed after being hidden
    assert ("/usr/lib", "/usr/lib") not in ro  # never hidden, so not re-bound
    assert not any(src == str(tmp_path / "missing") for src, _ in ro)
    opt_ml = args.index("/opt/ml")
    assert args[opt_ml - 2 : opt_ml + 1] == ["--bind", str(spec.opt_ml), "/opt/ml"]
    assert args.index(str(venv)) < opt_ml  # re-exposure before the job's own mounts
    channel = args.index("/opt/ml/input/data/train")
    assert args[channel - 2 : channel + 1] == ["--ro-bind", str(store_dir), "/opt/ml/input/data/train"]
    assert opt_ml < args.index("/opt/ml/input/config") < channel  # nested mounts after /opt/ml itself
    assert "--unshare-net" not in bwrap_args("bwrap", spec_in(tmp_path, network=True))


@needs_bwrap
def test_real_sandbox_hides_the_home_and_keeps_channels_read_only(tmp_path: Path) -> None:
    assert BWRAP.bwrap is not None
    home = tmp_path / "home"
    (home / "token").parent.mkdir(parents=True, exist_ok=True)
    (home / "token").write_text("secret")
    exposed = home / "envs"
    exposed.mkdir()
    (exposed / "lib.txt").write_text("library")
    store_dir = home / "storage" / "b" / "p"
    store_dir.mkdir(parents=True)
    (store_dir / "data.csv").write_text("1,2,3")
    spec = spec_in(tmp_path, hidden=[home], expose=[exposed], channels={"train": store_dir})
    script = (
        "import os\n"
        f"print(os.path.exists({str(home / 'token')!r}), open({str(exposed / 'lib.txt')!r}).read())\n"
        "print(open('/opt/ml/input/data/train/data.csv').read(), os.getcwd(), sorted(os.listdir('/tmp')))\n"
        "open('/opt/ml/model/m', 'w').write('model'); open('/tmp/t', 'w').write('t')\n"
        "try:\n    open('/opt/ml/input/data/train/new', 'w')\nexcept OSError as exc:\n    print('ro', exc.errno)\n"
        "try:\n    open('/usr/new', 'w')\nexcept OSError as exc:\n    print('usr', exc.errno)\n"
    )
    out = subprocess.run(sandboxed(BWRAP.bwrap, spec, [sys.executable, "-c", script]), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # /tmp is private: empty but for the mount points of paths re-exposed under the host's /tmp
    mount_points = tmp_mount_points([exposed, *INTERPRETER])
    assert out.stdout.splitlines() == ["False library", f"1,2,3 /opt/ml/code {mount_points}", "ro 30", "usr 30"]
    assert (spec.opt_ml / "model" / "m").read_text() == "model"
    assert (spec.tmp / "t").read_text() == "t"
    assert not (store_dir / "new").exists()


@needs_bwrap
def test_real_sandbox_without_network_cannot_reach_the_host_loopback(tmp_path: Path) -> None:
    import socket

    assert BWRAP.bwrap is not None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        script = (
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('reached')\n"
            "except OSError as exc:\n    print(type(exc).__name__)\n"
        )
        results = []
        for network in (True, False):
            spec = spec_in(tmp_path, network=network)
            cmd = sandboxed(BWRAP.bwrap, spec, [sys.executable, "-c", script])
            results.append(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())
    assert results == ["reached", "ConnectionRefusedError"]


# ------------------------------------------------------------------------------------------------ limits


def fake_v1(root: Path) -> None:
    (root / "memory" / "job").mkdir(parents=True)
    (root / "memory" / "job" / "memory.limit_in_bytes").write_text("9223372036854771712")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1")


def test_cgroup_v2_is_chosen_when_its_memory_controller_is_there(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "svc").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "svc" / "cgroup.subtree_control").write_text("memory cpu\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/svc\n")
    limits = select_limits(memory_gib=4, cpus=2, job_name="j", host="algo-1", root=root, proc_cgroup=proc)
    assert (limits.kind, limits.memory_parent, limits.cpu_parent) == ("cgroup v2", root / "svc", root / "svc")
    assert limits.describe() == "memory limit 4 GiB (cgroup v2); 2 CPUs (cgroup v2 cpu quota)"
    limits.prepare()
    made = root / "svc" / "trainforge-j-algo-1"
    assert (made / "memory.max").read_text() == str(4 * GIB)
    assert (made / "cpu.max").read_text() == "200000 100000"
    assert limits.wrap(["python", "x.py"]) == [
        "/bin/sh",
        "-c",
        'echo $$ > "$1" || exit 125; shift 1; exec "$@"',
        "trainforge-limits",
        str(made / "cgroup.procs"),
        "python",
        "x.py",
    ]
    assert not limits.oom_killed()
    (made / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert limits.oom_killed()


def test_cgroup_v1_under_the_own_memory_cgroup_then_rlimits(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    fake_v1(root)
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/job\n1:cpu:/\n0::/\n")
    assert own_cgroups(proc) == {"memory": "/job", "cpu": "/", "": "/"}
    limits = select_limits(memory_gib=0.5, cpus=1, job_name="j/x", host="algo-2", root=root, proc_cgroup=proc)
    assert (limits.kind, limits.memory_parent, limits.cpu_parent) == ("cgroup v1", root / "memory/job", root / "cpu")
    assert limits.describe() == "memory limit 512 MiB (cgroup v1); 1 CPUs (cgroup v1 cpu quota)"
    limits.prepare()
    made = root / "memory/job/trainforge-j_x-algo-2"
    assert (made / "memory.limit_in_bytes").read_text() == str(GIB // 2)
    assert (root / "cpu/trainforge-j_x-algo-2/cpu.cfs_quota_us").read_text() == "100000"
    (made / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert limits.oom_killed()

    empty = tmp_path / "nothing"
    empty.mkdir()
    fallback = select_limits(memory_gib=1, cpus=1, job_name="j", host="algo-1", root=empty, proc_cgroup=proc)
    assert fallback.kind == "rlimits"
    assert fallback.describe().startswith("memory limit 1 GiB (rlimit: address space); 1 CPUs")
    assert select_limits(memory_gib=None, cpus=None, job_name="j", host="h", root=empty).kind == "none"


def test_rlimits_make_a_big_allocation_fail_with_memory_error() -> None:
    limits = rlimit_limits(256 * 2**20, None)
    cmd = limits.wrap([sys.executable, "-c", "b = bytearray(1 << 30)"])
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1 and "MemoryError" in out.stderr
    assert format_gib(256 * 2**20) == "256 MiB" and format_gib(3 * GIB // 2) == "1.5 GiB"


def real_v1_memory() -> Path | None:
    limits = select_limits(memory_gib=0.125, cpus=None, job_name="probe", host="h")
    return limits.memory_parent if limits.kind == "cgroup v1" else None


@pytest.mark.skipif(real_v1_memory() is None, reason="no writable cgroup v1 memory hierarchy here")
def test_real_cgroup_v1_kills_past_the_limit_and_is_removed() -> None:
    limits: Limits = select_limits(memory_gib=0.125, cpus=1, job_name="unit-oom", host="algo-1")
    limits.prepare()
    made = list(limits.dirs)
    try:
        hog = "chunks = [b'x' * (16 << 20) for _ in range(32)]"  # 512 MiB against 128 MiB
        out = subprocess.run(limits.wrap([sys.executable, "-c", hog]), capture_output=True, text=True)
        assert out.returncode == -9 or out.returncode == 137
        assert limits.oom_killed()
    finally:
        limits.close()
    assert made and not any(path.exists() for path in made)
