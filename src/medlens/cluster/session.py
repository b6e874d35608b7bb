"""A Ray session: connect to a running cluster by its address, or start a local Ray on 127.0.0.1.

``ray start --head --port 6379 --node-ip-address HOST`` on one machine and ``ray start --address HOST:6379`` on the
others make a cluster; ``medlens predict ... --ray HOST:6379`` and ``medlens tune ... --ray HOST:6379`` then run on
it (every node needs medlens installed and the inputs on a path it can read). Without an address a local Ray is
started for the command (all of this machine's cores) and stopped after it.

``ray start`` protects a cluster with a token (Ray's ``RAY_AUTH_MODE=token``; the token in ``~/.ray/auth_token`` or
``RAY_AUTH_TOKEN``), and a driver sends it only in that mode: when ``RAY_AUTH_MODE`` is not set and a token is at
hand, connecting to an address sets the mode, as ``ray start`` does for its own processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from medlens.core.errors import ConfigError

log = logging.getLogger(__name__)

LOCAL = "local"


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module connected to ``address`` (``HOST:PORT``), or to a local Ray started on 127.0.0.1
    when ``address`` is None or ``"local"``; disconnects (and stops a local Ray) afterwards.

    Raises:
        ConfigError: ``--ray`` names an address where no Ray cluster answers.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # ask nothing of the network
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune prints no tables (verbose=0 then holds)
    if address not in (None, LOCAL) and "RAY_AUTH_MODE" not in os.environ and _token_at_hand():
        os.environ["RAY_AUTH_MODE"] = "token"  # read when Ray is imported
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) already connected: use that session as it is
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address in (None, LOCAL):
            ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=os.cpu_count() or 1, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError("--ray", f"cannot connect to a Ray cluster at {address!r} ({exc})") from None
    _quiet_ray_data()
    log.info("Ray: %s CPUs in the cluster", ray.cluster_resources().get("CPU", 0))
    try:
        yield ray
    finally:
        ray.shutdown()


def _token_at_hand() -> bool:
    """A Ray token in the environment or where ``ray start`` writes it."""
    from pathlib import Path

    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def _quiet_ray_data() -> None:
    """No progress bars from Ray Data: library code draws none (the CLI draws from the progress callback)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for level in ("ray.data", "ray.tune", "ray.train"):
        logging.getLogger(level).setLevel(logging.WARNING)
