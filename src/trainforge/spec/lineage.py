"""The shape of a job's lineage, and the comparisons made on it (pure: no I/O).

A host's lineage is what its supervisor reported it ran on (:mod:`trainforge.runtime.lineage` builds it)::

    {"Environment": {"Image", "Python", "LockSha256", "Distributions": {name: version}, "Fingerprint", ...} | null,
     "Code": {"Uri", "Sha256", "Size"} | null,
     "Data": {"<channel>": [{"Key", "Size", "ETag"}, ...]},
     "Container": {"Image", "Digest"} | null,
     "Output": {"ModelContentSha256"}}            # once the model was packaged

DescribeTrainingJob's ``Lineage`` is the leading host's (``algo-1``) with, for multi-host jobs, ``Hosts``: the
hosts whose environment ``Fingerprint`` differs from the leader's. The comparisons here are what a rerun warns
about (:func:`manifest_changes`, a channel's objects then and now) and what ``trainforge jobs diff`` shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from trainforge.errors import ValidationError

LINEAGE_KEYS = frozenset({"Environment", "Code", "Data", "Container", "Output"})
LINEAGE_MAX_BYTES = 4 << 20  # a host's lineage as JSON: thousands of objects and distributions fit easily
LEADER = "algo-1"


def check_lineage(value: Any) -> dict[str, Any]:
    """``value`` if it is a lineage object a supervisor may report; else :class:`ValidationError` naming
    ``lineage`` and the rule it breaks (an object of the known parts, each an object or null, at most 4 MiB)."""
    if not isinstance(value, dict):
        raise ValidationError("lineage: must be a JSON object", field="lineage")
    unknown = sorted(set(value) - LINEAGE_KEYS)
    if unknown:
        raise ValidationError(
            f"lineage: unknown part(s) {', '.join(unknown)}; the parts are {', '.join(sorted(LINEAGE_KEYS))}",
            field="lineage",
        )
    for key, part in value.items():
        if part is not None and not isinstance(part, dict):
            raise ValidationError(f"lineage.{key}: must be a JSON object or null", field=f"lineage.{key}")
    if len(json.dumps(value, separators=(",", ":"))) > LINEAGE_MAX_BYTES:
        raise ValidationError(f"lineage: larger than {LINEAGE_MAX_BYTES} bytes as JSON", field="lineage")
    return value


def fingerprint_of_lineage(lineage: Mapping[str, Any] | None) -> str | None:
    """The environment ``Fingerprint`` a lineage names (None: none recorded)."""
    env = (lineage or {}).get("Environment")
    if not isinstance(env, Mapping):
        return None
    value = env.get("Fingerprint")
    return value if isinstance(value, str) else None


def job_lineage(by_host: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """A job's ``Lineage`` from each host's: the leader's (``algo-1``, else the first host by name), plus ``Hosts``
    listing ``{"Host", "Environment"}`` of each other host whose environment fingerprint differs from the leader's
    (absent when all agree). None when no host reported one."""
    if not by_host:
        return None
    lead = LEADER if LEADER in by_host else sorted(by_host)[0]
    out = dict(by_host[lead])
    mine = fingerprint_of_lineage(out)
    differing = [
        {"Host": host, "Environment": lineage.get("Environment")}
        for host, lineage in sorted(by_host.items())
        if host != lead and fingerprint_of_lineage(lineage) != mine
    ]
    if differing:
        out["Hosts"] = differing
    return out


def manifest_changes(recorded: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]) -> list[str]:
    """What differs between a channel's objects as recorded and as they are now, one phrase per object, in key
    order: ``added s3://b/k``, ``removed s3://b/k``, ``changed s3://b/k (size 10 -> 12, ETag a -> b)``. Empty
    when both list the same keys with the same sizes and ETags."""
    before = {str(o.get("Key")): o for o in recorded}
    after = {str(o.get("Key")): o for o in current}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None:
            changes.append(f"added {key}")
        elif new is None:
            changes.append(f"removed {key}")
        else:
            what = [f"{f} {old.get(f)} -> {new.get(f)}" for f in ("Size", "ETag") if old.get(f) != new.get(f)]
            if what:
                changes.append(f"changed {key} ({', '.join(what)})")
    return changes


def mapping_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """How ``b`` differs from ``a``: ``{"Added": {k: b}, "Removed": {k: a}, "Changed": {k: [a, b]}}`` (only the
    non-empty parts; ``{}`` when equal). Used for distributions and hyperparameters."""
    out: dict[str, Any] = {}
    added = {k: b[k] for k in sorted(b.keys() - a.keys())}
    removed = {k: a[k] for k in sorted(a.keys() - b.keys())}
    changed = {k: [a[k], b[k]] for k in sorted(a.keys() & b.keys()) if a[k] != b[k]}
    for key, part in (("Added", added), ("Removed", removed), ("Changed", changed)):
        if part:
            out[key] = part
    return out
