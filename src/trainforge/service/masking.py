"""Which environment variables and hyperparameters hold secrets, and how they are shown (``****``).

A key looks secret when, compared case-insensitively, it contains ``password``, ``passwd``, ``secret``,
``credential``, ``api_key``/``apikey``, ``access_key``/``accesskey`` or ``private_key``/``privatekey``, or when one
of its words (split at ``_``, ``-``, ``.`` and camelCase) ends in ``token`` (``HF_TOKEN``, ``authToken``) or is
``auth``/``oauth``/``authorization``/``authentication``. ``tokenizer``, ``max_tokens`` or ``author`` are not secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "****"
_SUBSTRINGS = re.compile(
    r"password|passwd|secret|credential|api_?key|access_?key|private_?key",
    re.IGNORECASE,
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORDS = re.compile(r"[^a-z0-9]+")
_AUTH_WORDS = frozenset({"auth", "oauth", "authorization", "authentication", "authn", "authz"})
MASKED_FIELDS = ("Environment", "HyperParameters")


def looks_secret(key: str) -> bool:
    """Whether a variable or hyperparameter called ``key`` probably holds a secret."""
    if _SUBSTRINGS.search(key):
        return True
    words = [w for w in _WORDS.split(_CAMEL.sub("_", key).lower()) if w]
    return any(w.endswith("token") or w in _AUTH_WORDS for w in words)


def masked(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """``values`` with the value of every secret-looking key replaced by :data:`MASK`."""
    return {k: (MASK if looks_secret(k) else v) for k, v in (values or {}).items()}


def mask_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a DescribeTrainingJob-shaped dict with ``Environment`` and ``HyperParameters`` masked."""
    out = dict(record)
    for key in MASKED_FIELDS:
        if isinstance(out.get(key), Mapping):
            out[key] = masked(out[key])
    return out
