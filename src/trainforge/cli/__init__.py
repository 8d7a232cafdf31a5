"""The ``trainforge`` command: ``trainforge server ...`` and ``trainforge jobs ...``."""
