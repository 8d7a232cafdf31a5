"""The running interpreter's distribution list is cached per user until a site-packages directory changes."""

from __future__ import annotations

import json
import site
from pathlib import Path

import pytest

from trainforge.runtime import envcache


def test_the_list_is_read_once_and_again_after_a_site_packages_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake_site = tmp_path / "site-packages"
    fake_site.mkdir()
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(fake_site)])
    first = envcache._own_distributions()
    assert first["pytest"] == pytest.__version__
    (cache,) = (tmp_path / "cache" / "trainforge").glob("dists-*.json")
    stored = json.loads(cache.read_text())
    assert stored["distributions"] == first

    # A cached list is what the next call answers, as long as the directories did not change.
    stored["distributions"]["made-up-by-the-test"] = "1"
    cache.write_text(json.dumps(stored))
    assert envcache._own_distributions()["made-up-by-the-test"] == "1"

    # Installing something changes its directory: the list is read again from the metadata.
    (fake_site / "new_pkg-1.0.dist-info").mkdir()
    again = envcache._own_distributions()
    assert "made-up-by-the-test" not in again
    assert again == first
