"""Resolve the job's host names (``algo-1`` ...) to the addresses in ``TRAINFORGE_HOST_ADDRESSES``.

SageMaker gives each host of a job a DNS name; trainforge hosts are processes on this machine or on Ray nodes,
without such names, so Python's resolver functions learn them here. Runs at interpreter start (``site`` imports
``sitecustomize`` from the ``PYTHONPATH``); any other name resolves as before. Uses only the standard library.
"""

import json
import os
import socket

try:
    _ADDRESSES = {str(k): str(v) for k, v in json.loads(os.environ.get("TRAINFORGE_HOST_ADDRESSES") or "{}").items()}
except (ValueError, AttributeError):
    _ADDRESSES = {}


def _mapped(host):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else host
    return _ADDRESSES.get(name) if isinstance(name, str) else None


if _ADDRESSES:
    _getaddrinfo = socket.getaddrinfo
    _gethostbyname = socket.gethostbyname
    _gethostbyname_ex = socket.gethostbyname_ex

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        """``socket.getaddrinfo`` that knows the job's host names."""
        return _getaddrinfo(_mapped(host) or host, *args, **kwargs)

    def gethostbyname(host):  # type: ignore[no-untyped-def]
        """``socket.gethostbyname`` that knows the job's host names."""
        return _mapped(host) or _gethostbyname(host)

    def gethostbyname_ex(host):  # type: ignore[no-untyped-def]
        """``socket.gethostbyname_ex`` that knows the job's host names."""
        address = _mapped(host)
        return (host, [], [address]) if address else _gethostbyname_ex(host)

    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
