"""`stance ui`: the MLflow UI on the project's store (train/tracking/server.py), with a metrics view per experiment."""

from __future__ import annotations

import signal

import typer

from train.cli.common import fail


def ui_cmd(
    port: int = typer.Option(5000, "--port", "-p", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 exposes the UI to your network)."),
):
    """Start the MLflow UI on this project's runs; Ctrl-C stops it."""
    from train.tracking.server import UIError, experiment_views, serve
    from train.tracking.store import describe_store

    try:
        with serve(port, host, timeout=120, log=None) as (url, proc):
            typer.echo(f"MLflow UI: {url}  (Ctrl-C to stop)\nstore: {describe_store()}")
            for name, link in experiment_views(url):
                typer.echo(f"  {name}: {link}")
            old = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            try:
                code = proc.wait()
            finally:
                signal.signal(signal.SIGTERM, old)
            typer.secho(f"mlflow server exited with {code}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    except UIError as e:
        fail(str(e), 1)
