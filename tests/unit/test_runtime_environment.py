"""pip settings carried over to uv for per-job environments."""

from __future__ import annotations

from pathlib import Path

from trainforge.runtime.environment import pip_settings, uv_environment


def test_env_vars_map_to_uv(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_INDEX_URL": "https://idx.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://a.example/simple  https://b.example/simple",
        "PIP_FIND_LINKS": "/opt/wheels /srv/more",
    }
    out = uv_environment(env)
    assert out["UV_INDEX_URL"] == "https://idx.example/simple"
    assert out["UV_EXTRA_INDEX_URL"] == "https://a.example/simple https://b.example/simple"
    assert out["UV_FIND_LINKS"] == "/opt/wheels,/srv/more"
    assert out["PIP_INDEX_URL"] == env["PIP_INDEX_URL"]


def test_existing_uv_settings_win(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PIP_CONFIG_FILE": "/dev/null", "PIP_INDEX_URL": "a", "UV_INDEX_URL": "b"}
    assert uv_environment(env)["UV_INDEX_URL"] == "b"


def test_config_file_then_env(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://conf/simple\nextra-index-url = file:///x file:///y\n")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PIP_CONFIG_FILE": str(conf)}
    settings = pip_settings(env)
    assert settings["index-url"] == ["https://conf/simple"]
    assert settings["extra-index-url"] == ["file:///x", "file:///y"]
    env["PIP_INDEX_URL"] = "https://env/simple"
    assert pip_settings(env)["index-url"] == ["https://env/simple"]


def test_extra_indexes_make_uv_pick_the_best_match_like_pip(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PIP_CONFIG_FILE": "/dev/null", "PIP_EXTRA_INDEX_URL": "file:///mirror/simple"}
    assert uv_environment(env)["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    assert uv_environment({**env, "UV_INDEX_STRATEGY": "first-index"})["UV_INDEX_STRATEGY"] == "first-index"
    assert "UV_INDEX_STRATEGY" not in uv_environment({"HOME": str(tmp_path), "PIP_CONFIG_FILE": "/dev/null"})
