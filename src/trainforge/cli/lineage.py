"""What ``trainforge jobs describe --lineage`` and ``trainforge jobs diff`` print.

Both work on DescribeTrainingJob answers (their ``Lineage``, see :mod:`trainforge.spec.lineage`): the lineage as
aligned text for people (``--output json`` prints the object itself), and the differences between two jobs --
hyperparameters, image and environment (distributions added, removed or changed), code, data per channel, final
metrics and the model's content hash.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from trainforge.spec.lineage import manifest_changes, mapping_changes

# The aspects ``jobs diff`` compares, in the order it prints them.
ASPECTS = ("HyperParameters", "Image", "Environment", "Code", "Data", "FinalMetrics", "Model")


def _part(lineage: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    value = (lineage or {}).get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def lineage_lines(name: str, lineage: Mapping[str, Any] | None) -> list[str]:
    """The lineage of job ``name`` as text lines."""
    if not lineage:
        return [f"{name} recorded no lineage (it ran before lineage was recorded, or has not started yet)"]
    lines = [f"Lineage of {name}"]
    env = _part(lineage, "Environment")
    if env:
        distributions = env.get("Distributions") or {}
        lines += [
            "Environment:",
            f"  Image:          {env.get('Image')}",
            f"  Python:         {env.get('Python') or '-'}",
            f"  Lock sha256:    {env.get('LockSha256') or '- (not built from a lock)'}",
            f"  Fingerprint:    {env.get('Fingerprint')}",
            f"  Distributions:  {len(distributions)} (--output json lists them)",
        ]
        if env.get("LayerSha256"):
            lines.append(f"  Layer sha256:   {env['LayerSha256']}")
        if env.get("Locked") is False:
            lines.append("  Locked:         no (something was installed without a lock; another node may differ)")
    else:
        lines.append("Environment:    - (not recorded)")
    container = _part(lineage, "Container")
    if container:
        lines.append(f"Container:      {container.get('Image')} ({container.get('Digest')})")
    code = _part(lineage, "Code")
    if code:
        lines.append(f"Code:           {code.get('Uri')}")
        lines.append(f"  sha256:       {code.get('Sha256')} ({code.get('Size')} bytes)")
    else:
        lines.append("Code:           - (no source code)")
    data = lineage.get("Data") or {}
    if data:
        lines.append("Data:")
        for channel, objects in sorted(data.items()):
            total = sum(int(o.get("Size") or 0) for o in objects)
            lines.append(f"  {channel}: {len(objects)} object(s), {total} bytes")
    output = _part(lineage, "Output")
    if output.get("ModelContentSha256"):
        lines.append(f"Model content sha256: {output['ModelContentSha256']}")
    for host in lineage.get("Hosts") or []:
        fingerprint = _part(host, "Environment").get("Fingerprint")
        lines.append(f"Host {host.get('Host')} ran a different environment: fingerprint {fingerprint}")
    return lines


def _pair(a: Any, b: Any) -> dict[str, Any] | None:
    return None if a == b else {"A": a, "B": b}


def _image(desc: Mapping[str, Any]) -> str | None:
    algo = desc.get("AlgorithmSpecification") or {}
    value = algo.get("TrainingImage") or algo.get("AlgorithmName")
    return str(value) if value else None


def _metrics(desc: Mapping[str, Any]) -> dict[str, Any]:
    return {str(m.get("MetricName")): m.get("Value") for m in desc.get("FinalMetricDataList") or []}


def _environment_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("Fingerprint", "Python", "LockSha256", "LayerSha256"):
        pair = _pair(a.get(key), b.get(key))
        if pair is not None:
            out[key] = pair
    distributions = mapping_changes(a.get("Distributions") or {}, b.get("Distributions") or {})
    if distributions:
        out["Distributions"] = distributions
    return out


def _data_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for channel in sorted(set(a) | set(b)):
        if channel not in a or channel not in b:
            out[channel] = {"A": "present" if channel in a else "absent", "B": "present" if channel in b else "absent"}
            continue
        changes = manifest_changes(a[channel], b[channel])
        if changes:
            out[channel] = changes
    return out


def job_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What differs between two DescribeTrainingJob answers: ``{"A": name, "B": name, "Differences": {aspect:
    ...}, "Same": [aspects], "Unknown": [aspects]}``. An aspect is in ``Unknown`` when either job did not record it
    (no lineage, no model hash), so neither "same" nor "different" can be said."""
    la, lb = a.get("Lineage") or {}, b.get("Lineage") or {}
    differences: dict[str, Any] = {}
    unknown: list[str] = []
    hyper = mapping_changes(a.get("HyperParameters") or {}, b.get("HyperParameters") or {})
    if hyper:
        differences["HyperParameters"] = hyper
    image = _pair(_image(a), _image(b))
    if image is not None:
        differences["Image"] = image
    env_a, env_b = _part(la, "Environment"), _part(lb, "Environment")
    if env_a and env_b:
        env = _environment_diff(env_a, env_b)
        if env:
            differences["Environment"] = env
    else:
        unknown.append("Environment")
    if la and lb:
        code_a, code_b = _part(la, "Code"), _part(lb, "Code")
        code = {k: p for k in ("Uri", "Sha256") if (p := _pair(code_a.get(k), code_b.get(k))) is not None}
        if code:
            differences["Code"] = code
        data = _data_diff(la.get("Data") or {}, lb.get("Data") or {})
        if data:
            differences["Data"] = data
    else:
        unknown += ["Code", "Data"]
    metrics = mapping_changes(_metrics(a), _metrics(b))
    if metrics:
        differences["FinalMetrics"] = metrics
    model_a = _part(la, "Output").get("ModelContentSha256")
    model_b = _part(lb, "Output").get("ModelContentSha256")
    if model_a and model_b:
        if model_a != model_b:
            differences["Model"] = {"ModelContentSha256": {"A": model_a, "B": model_b}}
    else:
        unknown.append("Model")
    same = [aspect for aspect in ASPECTS if aspect not in differences and aspect not in unknown]
    return {
        "A": a.get("TrainingJobName"),
        "B": b.get("TrainingJobName"),
        "Differences": differences,
        "Same": same,
        "Unknown": unknown,
    }


def _changes_lines(changes: Mapping[str, Any], indent: str) -> list[str]:
    lines = []
    for key, value in (changes.get("Added") or {}).items():
        lines.append(f"{indent}+ {key} = {value}")
    for key, value in (changes.get("Removed") or {}).items():
        lines.append(f"{indent}- {key} = {value}")
    for key, (old, new) in (changes.get("Changed") or {}).items():
        lines.append(f"{indent}~ {key}: {old} -> {new}")
    return lines


def diff_lines(diff: Mapping[str, Any]) -> list[str]:
    """:func:`job_diff`'s answer as text lines (A's values first)."""
    lines = [f"A: {diff['A']}", f"B: {diff['B']}"]
    differences = diff["Differences"]
    for aspect in ASPECTS:
        if aspect not in differences:
            continue
        value = differences[aspect]
        lines.append(f"{aspect}:")
        if aspect in ("HyperParameters", "FinalMetrics"):
            lines += _changes_lines(value, "  ")
        elif aspect == "Image":
            lines.append(f"  {value['A']} -> {value['B']}")
        elif aspect == "Environment":
            for key, pair in value.items():
                if key == "Distributions":
                    lines.append("  Distributions:")
                    lines += _changes_lines(pair, "    ")
                else:
                    lines.append(f"  {key}: {pair['A']} -> {pair['B']}")
        elif aspect in ("Code", "Model"):
            for key, pair in value.items():
                lines.append(f"  {key}: {pair['A']} -> {pair['B']}")
        elif aspect == "Data":
            for channel, changes in value.items():
                if isinstance(changes, Mapping):
                    lines.append(f"  {channel}: A {changes['A']}, B {changes['B']}")
                else:
                    lines.append(f"  {channel}:")
                    lines += [f"    {change}" for change in changes]
    if diff["Same"]:
        lines.append(f"Same: {', '.join(diff['Same'])}")
    if diff["Unknown"]:
        lines.append(f"Not recorded by both jobs: {', '.join(diff['Unknown'])}")
    return lines


def write_lines(lines: list[str]) -> None:
    """Print ``lines`` on stdout."""
    sys.stdout.write("".join(line + "\n" for line in lines))
