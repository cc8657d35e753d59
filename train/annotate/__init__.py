"""Labeling statements by hand: `stance label` (a local web app), its durable event store and the exports.

Modules: ``pool`` (the statements to label and the order to present them in), ``store`` (the append-only event log,
fsynced per label), ``server`` (the JSON API and the page, standard-library HTTP server), ``export`` (long form for
`stance agreement`, the disagreement list, corpus rows validated like ``labeled/``). Sits above ``inference`` (file
readers, language detection) and ``data`` (the corpus validator); nothing imports it but the CLI.
"""

from train.annotate.export import corpus_rows, long_rows, resolve, write_corpus, write_rows
from train.annotate.pool import AnnotateError, Order, Pool, read_order, read_pool
from train.annotate.server import App, make_server
from train.annotate.store import Store, check_name, open_stores

__all__ = [
    "AnnotateError",
    "App",
    "Order",
    "Pool",
    "Store",
    "check_name",
    "corpus_rows",
    "long_rows",
    "make_server",
    "open_stores",
    "read_order",
    "read_pool",
    "resolve",
    "write_corpus",
    "write_rows",
]
