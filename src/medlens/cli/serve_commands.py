"""``medlens serve`` and ``medlens keys``: argument parsing over ``medlens.serve``; no logic here."""

from __future__ import annotations

from pathlib import Path

import typer

keys_app = typer.Typer(help="API keys of the service: add (shown once), revoke, list.", no_args_is_help=True)

KEYS = typer.Option(None, "--keys", help="The key file (default: MEDLENS_HOME/serve/keys.json); it stores hashes only.")


def _key_file(keys: Path | None) -> Path:
    from medlens.serve.service import service_home

    return keys or service_home() / "keys.json"


@keys_app.command("add")
def keys_add(
    name: str = typer.Argument(..., help="Whose key this is (a person, a system); the audit trail names it."),
    keys: Path | None = KEYS,
) -> None:
    """Make an API key: printed once, here; the key file keeps only its SHA-256."""
    from rich.console import Console

    from medlens.serve.keys import add_key

    path = _key_file(keys)
    key = add_key(path, name)
    print(key)
    Console(stderr=True).print(
        f"key {name!r} added to {path}; it is shown only now. Send it as 'Authorization: Bearer KEY'.",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="The key's name."), keys: Path | None = KEYS) -> None:
    """Revoke a key: a running service refuses it (403) from its next call on."""
    from rich.console import Console

    from medlens.serve.keys import revoke_key

    record = revoke_key(_key_file(keys), name)
    Console().print(f"key {record.name!r} revoked on {record.revoked}", markup=False, highlight=False)


@keys_app.command("list")
def keys_list(keys: Path | None = KEYS) -> None:
    """The keys in the file: name, when made, when revoked (never the key or its hash)."""
    from rich.console import Console
    from rich.table import Table

    from medlens.serve.keys import describe, read_keys

    table = Table(title=str(_key_file(keys)))
    for column in ("name", "created", "revoked"):
        table.add_column(column)
    for row in describe(read_keys(_key_file(keys))):
        table.add_row(row["name"], row["created"], row["revoked"])
    Console().print(table)


def serve_cmd(
    runs: list[str] = typer.Argument(
        ..., help="Run (or bundle) folders to serve, each as RUN (named after its folder) or NAME=RUN."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    keys: Path | None = KEYS,
    db: str | None = typer.Option(
        None, "--db", help="Database URL: postgresql://USER@HOST/DB, or sqlite:///FILE (default: MEDLENS_HOME/serve)."
    ),
    max_upload_mb: float = typer.Option(512, "--max-upload-mb", help="Largest upload accepted (413 beyond)."),
    workers: int | None = typer.Option(
        None, "--workers", help="Compute threads for the models (default: the machine's cores)."
    ),
) -> None:
    """Serve models over HTTP: a REST API (OpenAPI at /docs) with keys and an audit trail, and a web viewer at /."""
    import uvicorn

    from medlens.serve.app import create_app
    from medlens.serve.catalog import parse_models
    from medlens.serve.service import ServiceConfig

    config = ServiceConfig(models=parse_models(runs), db=db, max_upload_mb=max_upload_mb, workers=workers)
    if keys is not None:
        config.keys = keys
    app = create_app(config)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("serve")(serve_cmd)
