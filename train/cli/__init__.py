"""The `stance` command. Heavy libraries (torch, transformers, mlflow, pandas) are imported inside the commands, so
that `stance --help` stays instant; this package is the only one with function-local imports of project layers."""

from __future__ import annotations

import typer

from train.cli.analyze import analyze_cmd, explain_cmd
from train.cli.coding import agreement_cmd, label_issues_cmd, select_cmd
from train.cli.data import data_app
from train.cli.evaluate import eval_app
from train.cli.label import label_app
from train.cli.models import models_app
from train.cli.predict import predict_cmd
from train.cli.runs import runs_app
from train.cli.training import TRAIN_SETTINGS, train_cmd
from train.cli.tune import tune_cmd
from train.cli.ui import ui_cmd

app = typer.Typer(
    help="Multilingual stance classification for political rhetoric: data, models, training, inference, comparison.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data", help="Validate, inspect and import labeled statements.")
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")
app.command("ui")(ui_cmd)
app.add_typer(eval_app, name="eval")
app.command("train", context_settings=TRAIN_SETTINGS)(train_cmd)
app.command("predict")(predict_cmd)
app.command("tune", context_settings=TRAIN_SETTINGS)(tune_cmd)
app.add_typer(label_app, name="label")
app.command("analyze")(analyze_cmd)
app.command("explain")(explain_cmd)
app.command("select")(select_cmd)
app.command("agreement")(agreement_cmd)
data_app.command("label-issues")(label_issues_cmd)


def main():
    from train.tracking.relocate import StoreMovedError

    try:
        app()
    except StoreMovedError as e:  # raised wherever a command opens the store: one clear line, not a traceback
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
