"""``python -m trainforge.server``: run the server in the foreground with settings from the environment."""

from trainforge.server.main import serve
from trainforge.settings import load_settings

if __name__ == "__main__":
    serve(load_settings())
