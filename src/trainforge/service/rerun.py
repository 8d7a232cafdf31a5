"""Rerunning a training job: the same spec under a new name, with warnings for what changed since.

A rerun submits the original's CreateTrainingJob request again -- the same image (so the same locked
environment), the same ``sagemaker_submit_directory`` code object, the same channels, hyperparameters and role --
under a new name. Before it does, the original's recorded lineage (:mod:`trainforge.spec.lineage`) is compared
with the object store as it is now: each channel whose objects were added, removed or changed (size or ETag; the
local store's sha256) and a code object whose sha256 changed give a warning. Nothing is refused for a change: the
warnings say what the rerun will not repeat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trainforge.errors import ConflictError, NotFoundError, TrainforgeError, ValidationError
from trainforge.remote_function.workspace import INVOKE_SCRIPT
from trainforge.runtime.lineage import current_manifest, store_object_sha256
from trainforge.runtime.toolkit import PROGRAM_HP, SUBMIT_DIR_HP, decode_value
from trainforge.service.jobs import JobService
from trainforge.service.principal import Principal
from trainforge.spec.fields import NAME_RE
from trainforge.spec.job import ChannelSpec, CreateTrainingJobRequest, parse_create_request
from trainforge.spec.lineage import job_lineage, manifest_changes
from trainforge.storage import ObjectStore
from trainforge.store.records import JobRecord

MAX_NAME = 63
MAX_CHANGES_SHOWN = 10  # per channel; the warning says how many more there are
_RERUN_SUFFIX = re.compile(r"-rerun-\d+$")


def rerun_name(original: str, n: int) -> str:
    """``<original>-rerun-<n>`` (a rerun of a rerun counts on from the same base), cut to 63 characters."""
    base = _RERUN_SUFFIX.sub("", original)
    suffix = f"-rerun-{n}"
    return base[: MAX_NAME - len(suffix)] + suffix


@dataclass
class RerunService:
    """``POST /v1/training-jobs/{name}/rerun`` and the console's Clone."""

    jobs: JobService
    objects: ObjectStore

    def rerun(self, name: str, principal: Principal, *, new_name: str | None = None) -> dict[str, Any]:
        """Submit job ``name`` (the caller's, or any for an admin) again as a job of ``principal``.

        Returns ``{"TrainingJobArn", "TrainingJobName", "Warnings"}``. The new name is ``new_name`` or the first
        free ``<name>-rerun-<n>``.

        Raises:
            NotFoundError: No job ``name`` the caller may see.
            ValidationError: ``new_name`` is not a valid job name (field ``TrainingJobName``), or the original
                spec is no longer accepted (e.g. its image left the catalogue).
            ConflictError: ``new_name`` is taken.
        """
        original = self.jobs.owned(name, principal)
        self._check_rerunnable(original)
        target = self._target_name(original.name, new_name)
        spec = {**original.spec, "TrainingJobName": target}
        request = parse_create_request(spec)
        lineage = job_lineage(self.jobs.store.host_lineages(original.id))
        warnings = self.warnings(original, request, lineage)
        reply = self.jobs.submit(request, principal)
        return {"TrainingJobArn": reply["TrainingJobArn"], "TrainingJobName": target, "Warnings": warnings}

    def _check_rerunnable(self, original: JobRecord) -> None:
        """Refuse what a rerun can never run: a ``@remote`` function's job, whose payload is signed with a key made
        for the original job's name (a job under another name cannot verify it)."""
        program = decode_value((original.spec.get("HyperParameters") or {}).get(PROGRAM_HP, '""'))
        if program == INVOKE_SCRIPT:
            raise ValidationError(
                f"TrainingJobName: training job {original.name!r} ran a @remote function, whose payload is signed for "
                "that job's name only; call the function again to run it again",
                field="TrainingJobName",
            )

    def _taken(self, name: str) -> bool:
        try:
            self.jobs.store.get(name)
        except NotFoundError:
            return False
        return True

    def _target_name(self, original: str, new_name: str | None) -> str:
        if new_name is not None:
            if not NAME_RE.match(new_name):
                raise ValidationError(
                    f"TrainingJobName: {new_name!r} is not a valid job name: 1 to 63 letters, digits and hyphens, "
                    "starting and ending with a letter or digit",
                    field="TrainingJobName",
                )
            if self._taken(new_name):
                raise ConflictError(
                    f"TrainingJobName: a training job named {new_name!r} already exists; choose another name "
                    "or leave TrainingJobName out for <name>-rerun-<n>",
                    details={"TrainingJobName": new_name},
                )
            return new_name
        n = 1
        while self._taken(rerun_name(original, n)):
            n += 1
        return rerun_name(original, n)

    def warnings(
        self, original: JobRecord, request: CreateTrainingJobRequest, lineage: dict[str, Any] | None
    ) -> list[str]:
        """What a rerun of ``original`` will not repeat, one sentence each (empty: nothing changed that we see)."""
        out: list[str] = []
        if request.CheckpointConfig is not None:
            out.append(
                f"CheckpointConfig: the rerun shares {request.CheckpointConfig.S3Uri} with {original.name}; it starts "
                "from the checkpoints stored there"
            )
        if lineage is None:
            out.append(
                f"training job {original.name!r} recorded no lineage (it ran before lineage was recorded, or never "
                "started): there is nothing to compare its code and data with"
            )
            return out
        out.extend(self._code_warnings(original, request, lineage.get("Code")))
        data = lineage.get("Data") or {}
        for channel in request.InputDataConfig or []:
            out.extend(self._channel_warnings(original, channel, data.get(channel.ChannelName)))
        return out

    def _code_warnings(
        self, original: JobRecord, request: CreateTrainingJobRequest, code: dict[str, Any] | None
    ) -> list[str]:
        submit = decode_value((request.HyperParameters or {}).get(SUBMIT_DIR_HP, '""'))
        if not isinstance(submit, str) or not submit.startswith("s3://"):
            return []
        if not code or not code.get("Sha256"):
            return [f"code {submit}: {original.name} recorded no code fingerprint; nothing to compare with"]
        try:
            now = store_object_sha256(self.objects, submit)
        except NotFoundError:
            return [f"code {submit}: the object no longer exists; the rerun will fail to fetch its code"]
        except TrainforgeError as exc:
            return [f"code {submit}: cannot be read to compare ({exc.message})"]
        if now != code["Sha256"]:
            return [f"code {submit} changed since {original.name} ran: sha256 {code['Sha256']} -> {now}"]
        return []

    def _channel_warnings(
        self, original: JobRecord, channel: ChannelSpec, recorded: list[dict[str, Any]] | None
    ) -> list[str]:
        name = channel.ChannelName
        source = channel.DataSource.S3DataSource
        if source is None:
            return []
        if recorded is None:
            return [f"channel '{name}': {original.name} recorded no data manifest; nothing to compare with"]
        try:
            current = current_manifest(self.objects, source.S3Uri, source.S3DataType)
        except TrainforgeError as exc:
            return [f"channel '{name}': cannot list {source.S3Uri} to compare ({exc.message})"]
        changes = manifest_changes(recorded, current)
        if not changes:
            return []
        shown = "; ".join(changes[:MAX_CHANGES_SHOWN])
        more = f"; and {len(changes) - MAX_CHANGES_SHOWN} more" if len(changes) > MAX_CHANGES_SHOWN else ""
        return [f"channel '{name}': data changed since {original.name} ran: {shown}{more}"]
