"""``python -m trainforge.server``: run the server in the foreground with settings from the environment."""

import sys

import pydantic

from trainforge.server.main import EXIT_SETTINGS, serve
from trainforge.settings import load_settings

if __name__ == "__main__":
    try:
        settings = load_settings()
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        name = "TRAINFORGE_" + str(first["loc"][0]).upper() if first.get("loc") else "TRAINFORGE_*"
        sys.stderr.write(f"error: invalid setting {name}: {first['msg']}\n")
        raise SystemExit(EXIT_SETTINGS) from None
    serve(settings)
