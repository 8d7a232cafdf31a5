"""A directory put first on the ``PYTHONPATH`` of a multi-host job's code: its ``sitecustomize`` makes the job's
host names (``algo-1``, ...) resolve to their addresses in every Python process of the job."""

from pathlib import Path

HOSTNAMES_DIR = Path(__file__).resolve().parent
ADDRESSES_ENV = "TRAINFORGE_HOST_ADDRESSES"
