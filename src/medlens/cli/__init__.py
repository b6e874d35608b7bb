"""The ``medlens`` command: argument parsing only; every command calls a workflow."""
