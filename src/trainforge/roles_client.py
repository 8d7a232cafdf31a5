"""Client calls of the role and data-key routes, over :meth:`TrainforgeClient.request`."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from trainforge.client import TrainforgeClient
from trainforge.errors import StorageError


def _path(name: str) -> str:
    return f"/v1/roles/{quote(name, safe='')}"


def create_role(
    client: TrainforgeClient, name: str, *, read: list[str], write: list[str], description: str | None = None
) -> dict[str, Any]:
    """``POST /v1/roles``: the new role (admins only)."""
    body = {"RoleName": name, "Read": read, "Write": write, "Description": description}
    result: dict[str, Any] = client.request("POST", "/v1/roles", json_body=body)
    return result


def list_roles(client: TrainforgeClient) -> list[dict[str, Any]]:
    """``GET /v1/roles``: every role, by name (admins only)."""
    roles: list[dict[str, Any]] = client.request("GET", "/v1/roles").get("Roles", [])
    return roles


def delete_role(client: TrainforgeClient, name: str) -> None:
    """``DELETE /v1/roles/{name}`` (admins only)."""
    client.request("DELETE", _path(name))


def grant_role(client: TrainforgeClient, role: str, user: str, *, default: bool = False) -> dict[str, Any]:
    """``POST /v1/roles/{role}/grants``: ``{"RoleName", "UserName", "Default"}`` (admins only)."""
    result: dict[str, Any] = client.request(
        "POST", f"{_path(role)}/grants", json_body={"UserName": user, "Default": default}
    )
    return result


def revoke_role(client: TrainforgeClient, role: str, user: str) -> dict[str, Any]:
    """``DELETE /v1/roles/{role}/grants/{user}``: ``{"RoleName", "UserName", "DefaultRole"}`` (admins only)."""
    result: dict[str, Any] = client.request("DELETE", f"{_path(role)}/grants/{quote(user, safe='')}")
    return result


def whoami(client: TrainforgeClient) -> dict[str, Any]:
    """``GET /v1/users/me``: ``{"UserName", "Admin", "DefaultRole"}``."""
    result: dict[str, Any] = client.request("GET", "/v1/users/me")
    return result


def fetch_data_key(client: TrainforgeClient, key_id: str, uri: str, for_write: bool) -> bytes:
    """The data key of the encrypted object ``uri`` (``POST /v1/data-keys``); the shape of a keyring's fetch.

    Raises:
        StorageError: Asked for a write key (only a job's supervisor writes encrypted objects).
        PermissionDeniedError: None of the caller's roles may read ``uri``.
    """
    if for_write:
        raise StorageError(f"the SDK does not write objects encrypted under '{key_id}'")
    answer = client.request("POST", "/v1/data-keys", json_body={"uri": uri})
    return base64.b64decode(str(answer["Key"]))
