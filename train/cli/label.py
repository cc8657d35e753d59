"""`stance label POOL --annotator NAME`: the labeling app (train/annotate); `stance label export STORE ...`: the labels
in long form (for `stance agreement`), the disagreement list, or corpus rows for labeled/. docs/annotation.md."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from train.cli.common import fail


class _ServeByDefault(TyperGroup):
    """`stance label POOL ...` runs `serve`; `stance label export ...` the export (a group cannot also take POOL)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


label_app = typer.Typer(
    cls=_ServeByDefault,
    no_args_is_help=True,
    help="Label statements in a local web app; export the labels (long form, corpus rows).",
)


def _store_dir(store: Optional[Path], pool: Path) -> Path:
    return store if store is not None else Path("annotations") / pool.stem


@label_app.command("serve")
def serve_cmd(
    pool: Path = typer.Argument(..., help="Statements to label: CSV, JSONL or Parquet (e.g. `stance predict` output)."),
    annotator: str = typer.Option(..., "--annotator", "-a", help="Your name (letters, digits, . _ -); each has a queue."),
    store: Optional[Path] = typer.Option(None, "--store", help="Store folder (default: annotations/<pool name>)."),
    port: int = typer.Option(8765, "--port", "-p", help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 exposes the app to your network)."),
    order: str = typer.Option(
        "file",
        "--order",
        help="`file` (pool order) or a file with an `id` column (+ `reason`): `stance select` output, a label-problems report.",
    ),
    adjudicate: Optional[Path] = typer.Option(
        None,
        "--adjudicate",
        help="A disagreement list (`stance label export --disagreements`): label these as adjudicator; your label decides.",
    ),
    id_column: str = typer.Option("id", "--id-column", help="The pool's id column."),
    text_column: str = typer.Option("text", "--text-column", help="The pool's text column."),
    guidelines: Path = typer.Option(None, "--guidelines", help="Guidelines to show (default: labeled/GUIDELINES.md)."),
):
    """Label the statements of POOL in the browser, one at a time; every label is saved the moment it is given."""
    from train.annotate import AnnotateError, App, Store, check_name, make_server, read_order, read_pool
    from train.runtime import DEFAULT_LABELED_DIR

    if adjudicate is not None and order != "file":
        fail("--adjudicate presents its own list; leave out --order")
    try:
        check_name(annotator)
        the_pool = read_pool(pool, id_column, text_column)
        the_order = read_order(adjudicate or order, the_pool)
        the_store = Store(_store_dir(store, pool), writer=True)
    except AnnotateError as e:
        fail(str(e))
    if the_store.torn_tail:
        typer.secho(
            f"warning: cut an unfinished last line off {the_store.path} (a crash mid-write; never acknowledged)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    local = Path("labeled/GUIDELINES.md")
    app = App(
        the_pool,
        the_order,
        the_store,
        annotator,
        "adjudicator" if adjudicate else "annotator",
        guidelines or (local if local.is_file() else DEFAULT_LABELED_DIR / "GUIDELINES.md"),
    )
    try:
        server = make_server(app, host, port)
    except AnnotateError as e:
        the_store.close()
        fail(str(e), 1)
    url = f"http://{host}:{server.server_address[1]}/"
    progress = the_store.progress(the_order.ids, annotator, app.role)
    typer.echo(f"stance label: {url}?annotator={annotator}  (Ctrl-C to stop)")
    typer.echo(
        f"pool: {pool} ({len(the_pool.rows)} statements), order: {the_order.source}, "
        f"{annotator}: {progress['done']} of {progress['total']} labeled; store: {the_store.path}"
    )
    old = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped; every label given is in the store", err=True)
    finally:
        signal.signal(signal.SIGTERM, old)
        server.server_close()
        the_store.close()


def _defaults(pairs: List[str]) -> dict[str, str]:
    from train.annotate.export import DEFAULTABLE

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in DEFAULTABLE:
            fail(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(DEFAULTABLE)}")
        out[key] = value
    return out


@label_app.command("export")
def export_cmd(
    stores: List[Path] = typer.Argument(
        ...,
        help="Store folder(s) `stance label` wrote (annotations/<pool name>); several: each annotator's own store, read as one.",
    ),
    long: Optional[Path] = typer.Option(
        None,
        "--long",
        help="Write every label in effect, one row per statement and "
        "annotator (id, annotator, stance, ...), .csv or .jsonl: `stance agreement` reads it.",
    ),
    corpus: Optional[Path] = typer.Option(
        None,
        "--corpus",
        help="Write decided statements as corpus rows, e.g. "
        "labeled/statements_annotated_<name>.jsonl (validated first; all or nothing).",
    ),
    pool: Optional[Path] = typer.Option(None, "--pool", help="The pool that was labeled (needed with --corpus)."),
    disagreements: Optional[Path] = typer.Option(
        None,
        "--disagreements",
        help="Write the statements whose annotators disagree (id, reason): `stance label POOL --adjudicate FILE` settles them.",
    ),
    annotators: Optional[List[str]] = typer.Option(None, "--annotator", help="Count only these annotators' labels."),
    defaults: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help="KEY=VALUE for values the pool lacks: language, "
        "speaker, speaker_group, date, register (e.g. --set speaker_group=other).",
    ),
    id_prefix: str = typer.Option("", "--id-prefix", help="Prefix for corpus ids (e.g. ann-tg-), unique across labeled/."),
    detect_language: bool = typer.Option(False, "--detect-language", help="Detect a missing language (lingua; noted)."),
    id_column: str = typer.Option("id", "--id-column", help="The pool's id column."),
    text_column: str = typer.Option("text", "--text-column", help="The pool's text column."),
):
    """Export the labels of STORE(S) (several outputs may be given at once)."""
    from train.annotate import AnnotateError, corpus_rows, long_rows, open_stores, read_pool, resolve, write_corpus, write_rows

    if not (long or corpus or disagreements):
        fail("nothing to do: give --long FILE, --corpus FILE and/or --disagreements FILE")
    if corpus and not pool:
        fail("--corpus needs --pool (the file that was labeled: texts, speakers and dates come from it)")
    values = _defaults(defaults)
    try:
        the_store = open_stores(stores)
        decided, disputed = resolve(the_store, annotators)
        if long:
            rows = long_rows(the_store)
            rows = [r for r in rows if not annotators or r["annotator"] in annotators]
            from train.annotate.export import LONG_COLUMNS

            write_rows(rows, LONG_COLUMNS, long)
            typer.echo(f"wrote {long}: {len(rows)} labels by {len({r['annotator'] for r in rows})} annotator(s)")
        if disagreements:
            write_rows(disputed, ("id", "reason"), disagreements)
            typer.echo(f"wrote {disagreements}: {len(disputed)} disagreement(s)")
        if corpus:
            the_pool = read_pool(pool, id_column, text_column)
            rows = corpus_rows(the_pool, decided, values, id_prefix, detect_language)
            _, warnings = write_corpus(rows, the_pool, corpus)
            for w in warnings:
                typer.echo(f"warning: {w}", err=True)
            typer.echo(f"wrote {corpus}: {len(rows)} statements (source: annotated); {len(disputed)} left out as disagreements")
            for d in disputed[:20]:
                typer.echo(f"  {d['id']}: {d['reason']}", err=True)
    except AnnotateError as e:
        fail(str(e))
