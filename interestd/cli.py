"""The `interestd` command: thin Typer commands that parse arguments, call one service and format the result.

Heavy modules (SQLAlchemy, the pipeline) are imported inside the commands, so `interestd --help` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.exceptions import TyperException

from interestd import __version__
from interestd.errors import InterestdError, UsageError

if TYPE_CHECKING:
    from interestd.config import Settings
    from interestd.db import Database
    from interestd.pipeline import PipelineContext

app = typer.Typer(
    name="interestd",
    help="Turn the shared mailbox of notification e-mails into a worked queue of interest cards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rendering it with rich would import rich's markdown stack, tripling `--help`'s start-up.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(
    help="Database schema: apply migrations, show the version.", no_args_is_help=True, rich_markup_mode=None
)
mail_app = typer.Typer(
    help="Stored messages, including those that did not become cards, and why.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")
app.add_typer(mail_app, name="mail")

INTERNAL_ERROR_EXIT = 70
log = logging.getLogger("interestd")


@dataclass
class State:
    """Per-invocation state: global options, and settings / database opened on first use."""

    config_path: Path | None = None
    debug: bool = False
    as_login: str | None = None
    _settings: Settings | None = None
    _database: Database | None = None
    _context: PipelineContext | None = None
    cleanup: list[Any] = field(default_factory=list)

    def settings(self) -> Settings:
        if self._settings is None:
            from interestd.config import config_file_warnings, load_settings, secret_file_warnings

            self._settings = load_settings(self.config_path)
            _configure_logging("debug" if self.debug else self._settings.logging.level)
            for warning in config_file_warnings(self._settings.source) + secret_file_warnings(self._settings):
                log.warning(warning)
        return self._settings

    def database(self) -> Database:
        if self._database is None:
            from interestd.services import open_database

            self._database = open_database(self.settings())
        return self._database

    def manager(self) -> str:
        """Who is speaking: --as, else $INTERESTD_MANAGER, else the OS user mapped through the config."""
        from interestd.work import current_manager

        return current_manager(self.settings(), self.as_login, os.environ)

    def context(self) -> PipelineContext:
        if self._context is None:
            from interestd.services import build_context

            self._context = build_context(self.settings())
        return self._context

    def close(self) -> None:
        """Close the database when the command ends (SQLite folds its write-ahead log into the file)."""
        if self._database is not None:
            self._database.dispose()
            self._database = None


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Logs to whatever sys.stderr is at the time of each record (it may be replaced after start-up)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("interestd: %(levelname)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"interestd {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $INTERESTD_CONFIG, "
            "then ~/.config/interestd/config.toml, then /etc/interestd/config.toml).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Verbose logs, and tracebacks on errors.")] = False,
    as_login: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Act as this manager (default: $INTERESTD_MANAGER, then the OS user mapped through the config).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = state = State(config_path=config, debug=debug, as_login=as_login)
    ctx.call_on_close(state.close)


# --- output helpers -----------------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _local(moment: Any, settings: Settings) -> str:
    if moment is None:
        return ""
    return moment.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")


def _excerpt(text: str | None, width: int = 60) -> str:
    from interestd.safety import terminal_text

    flat = " ".join(terminal_text(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --- ingest and processing ----------------------------------------------------------------------------------


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help=".eml files, folders of them, mbox files or Maildir folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Store and process mail from files; prints one summary line. Ingesting the same mail twice is harmless."""
    from interestd.forking import POOL_FROM, start_workers_early
    from interestd.sources.files import check_paths, total_size

    state = _state(ctx)
    check_paths(paths)
    settings = state.settings()
    # Worker processes pay off from a few dozen messages on (about 4 KB each is a fair guess); enough is known
    # once files for a few hundred are found. Their fork server starts before the rest of the command loads.
    expected = total_size(paths, up_to=16 * POOL_FROM * 4096) // 4096
    start_workers_early(settings, expected)
    from interestd.services import evaluator_for, ingest_paths

    database, context = state.database(), state.context()
    progress = None
    if sys.stderr.isatty() and not as_json:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("ingesting"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=_console(stderr=True),
            transient=True,
        )
        task = bar.add_task("ingest", total=total_size(paths))
        bar.start()
        state.cleanup.append(bar.stop)

        def progress(done: int) -> None:
            bar.update(task, completed=done)

    with evaluator_for(settings, context, expected) as evaluator:
        summary = ingest_paths(
            database,
            context,
            paths,
            max_message_bytes=settings.limits.max_message_bytes,
            progress=progress,
            evaluator=evaluator,
        )

    for stop in state.cleanup:
        stop()
    state.cleanup.clear()
    for error in summary.errors:
        log.error("cannot read %s", error)
    if as_json:
        _print_json(
            {
                "read": summary.read,
                "duplicates": summary.duplicates,
                "cards": summary.outcomes["card"],
                "skipped": summary.outcomes["skipped"],
                "quarantined": summary.outcomes["quarantined"],
                "proofs": summary.outcomes["proof"],
                "errors": summary.errors,
            }
        )
    else:
        typer.echo(summary.line())
    if summary.errors:
        raise typer.Exit(1)


@app.command()
def reparse(
    ctx: typer.Context,
    refs: Annotated[list[str] | None, typer.Argument(help="Cards (INT-n) or stored message ids to reparse.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="Reparse every message with this status (quarantined, skipped, card); default quarantined."
        ),
    ] = None,
) -> None:
    """Run stored messages through the current parsers again; cards are updated in place, keeping their history."""
    from interestd.services import reparse as reparse_service

    state = _state(ctx)
    summary = reparse_service(
        state.settings(), state.database(), state.context(), statuses=status or ["quarantined"], refs=refs or []
    )
    counts = summary.counts
    total = sum(counts.values())
    typer.echo(
        f"{total} messages reparsed: {counts['card']} cards, {counts['skipped']} skipped, "
        f"{counts['quarantined']} quarantined" + (f", {counts['proof']} reply proofs" if counts["proof"] else "")
    )


# --- the mailbox and the daemon -------------------------------------------------------------------------


@app.command()
def poll(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Poll every folder of every mailbox once, then exit.")] = True,
    mailbox: Annotated[
        list[str] | None, typer.Option("--mailbox", "-m", help="Only this mailbox (repeatable).")
    ] = None,
) -> None:
    """Fetch new mail from the IMAP mailbox(es) once and process it: what the daemon's poll job does."""
    from interestd.forking import start_workers_for_poll
    from interestd.sources.imap import SessionsAhead

    state = _state(ctx)
    settings = state.settings()
    start_workers_for_poll(settings)
    # The IMAP sessions open while this command loads its database code and parsers.
    wanted = [m for m in settings.all_mailboxes() if not mailbox or m.name in mailbox]
    ahead = SessionsAhead([(m, settings.mailbox_password(m)) for m in wanted])
    from interestd.services import poll_once

    results = poll_once(settings, state.database(), state.context(), mailbox or [], ahead=ahead)
    failed = False
    for result in results:
        counts = result.processed.counts
        folders = ", ".join(
            f"{f.folder}: {f.new} new"
            + (" (first poll)" if f.first_run else "")
            + (" (UIDVALIDITY changed, rescanned)" if f.rescanned else "")
            for f in result.folders
        )
        if result.polled_by:
            typer.echo(f"{result.mailbox}: being polled by {result.polled_by} right now; nothing done here")
            continue
        if result.error:
            failed = True
            typer.echo(f"{result.mailbox}: failed: {result.error}", err=True)
        typer.echo(
            f"{result.mailbox}: {result.fetched} fetched ({folders or 'no folder read'}); "
            f"{counts['card']} cards, {counts['skipped']} skipped, {counts['quarantined']} quarantined"
            + (f", {counts['proof']} reply proofs" if counts["proof"] else "")
        )
    if failed:
        raise typer.Exit(3)


@app.command()
def run(ctx: typer.Context) -> None:
    """Run the daemon in the foreground (for systemd): poll on schedule, IDLE, nightly report; SIGHUP reloads."""
    from interestd.config import load_settings
    from interestd.scheduler import Daemon
    from interestd.services import build_context, configured_mailboxes, open_database

    state = _state(ctx)
    settings = state.settings()
    configured_mailboxes(settings)
    daemon = Daemon(
        settings,
        open_database=open_database,
        build_context=build_context,
        reload_settings=lambda: load_settings(state.config_path),
    )
    raise typer.Exit(daemon.run())


@app.command()
def backfill(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="Import mail received on or after this date (YYYY-MM-DD).")],
    mailbox: Annotated[
        list[str] | None, typer.Option("--mailbox", "-m", help="Only this mailbox (repeatable).")
    ] = None,
) -> None:
    """Import older mail on purpose (the first poll only takes mail from then on); known messages are skipped."""
    from datetime import date

    from interestd.services import backfill as backfill_service

    try:
        day = date.fromisoformat(since)
    except ValueError:
        raise UsageError(f"not a date: {since!r} (use YYYY-MM-DD)") from None
    state = _state(ctx)
    progress = None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=_console(stderr=True),
            transient=True,
        )
        tasks: dict[str, Any] = {}
        bar.start()
        state.cleanup.append(bar.stop)

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"backfill {name}", total=total)
            bar.update(tasks[name], completed=done, total=total)

    try:
        results = backfill_service(
            state.settings(), state.database(), state.context(), since=day, names=mailbox or [], progress=progress
        )
    finally:
        for stop in state.cleanup:
            stop()
        state.cleanup.clear()
    counts = results[-1].processed.counts if results else {}
    fetched = sum(r.fetched for r in results)
    new = sum(r.new for r in results)
    typer.echo(
        f"{fetched} messages since {day}: {new} new, {fetched - new} already stored; "
        f"{counts.get('card', 0)} cards, {counts.get('skipped', 0)} skipped, "
        f"{counts.get('quarantined', 0)} quarantined"
    )


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Last successful poll, last error, counts and backlog; exits 8 when a mailbox's last success is too old."""
    from interestd.services import status as status_service

    state = _state(ctx)
    settings = state.settings()
    with state.database().session() as session:
        report = status_service(settings, session)
    if as_json:
        _print_json(
            {
                "healthy": report.healthy,
                "problems": report.problems,
                "messages": report.counts,
                "unprocessed_cards": report.unprocessed_cards,
                "unassigned_cards": report.unassigned_cards,
                "pending_messages": report.pending_messages,
                "pollers": {
                    name: {"holder": holder, "until": until} for name, (holder, until) in report.pollers.items()
                },
                "folders": [
                    {
                        "mailbox": f.mailbox,
                        "folder": f.folder,
                        "last_poll_at": f.last_poll_at,
                        "last_success_at": f.last_success_at,
                        "last_error": f.last_error,
                        "last_error_at": f.last_error_at,
                        "last_uid": f.last_uid,
                        "healthy": f.healthy,
                    }
                    for f in report.folders
                ],
            }
        )
    else:
        from interestd.safety import terminal_text

        for folder in report.folders:
            mark = "ok " if folder.healthy else "BAD"
            success = _local(folder.last_success_at, settings) or "never"
            polled = _local(folder.last_poll_at, settings) or "never"
            line = f"{mark} {folder.mailbox}/{folder.folder}: last success {success}, last poll {polled}"
            if folder.last_error:
                line += f"; last error {_local(folder.last_error_at, settings)}: {folder.last_error}"
            if folder.mailbox in report.pollers:
                line += f"; polled by {report.pollers[folder.mailbox][0]}"
            typer.echo(terminal_text(line))
        counts = ", ".join(f"{count} {name}" for name, count in sorted(report.counts.items())) or "none"
        typer.echo(f"messages: {counts}")
        typer.echo(
            f"backlog: {report.unprocessed_cards} unprocessed cards ({report.unassigned_cards} unassigned), "
            f"{report.pending_messages} messages waiting to be processed"
        )
        run = report.last_report
        if run is not None:
            when = _local(run.sent_at or run.claimed_at, settings)
            error = f": {run.last_error}" if run.last_error and run.status != "sent" else ""
            typer.echo(terminal_text(f"report: {run.period_key} {run.status} {when}{error}"))
    if not report.healthy:
        for problem in report.problems:
            typer.echo(f"interestd: unhealthy: {problem}", err=True)
        raise typer.Exit(8)


@app.command()
def parse(
    ctx: typer.Context,
    message: Annotated[Path, typer.Argument(help="An .eml file.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show which parser takes a message (and which others were considered), the card it would build, and the
    fields it could not find. Nothing is stored: the tool for writing a custom parser."""
    from interestd.safety import terminal_text
    from interestd.services import explain_message

    try:
        raw = message.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {message}: {exc.strerror or exc}") from None
    state = _state(ctx)
    state.settings()
    explanation = explain_message(raw, state.context())
    if as_json:
        _print_json(explanation)
        return
    e = explanation
    lines = [f"message:    {e['subject']!r} from {e['from'] or '(no sender)'}, {e['date'] or 'no date'}"]
    if e["forwarded"]:
        lines.append(f"forwarded:  {e['forwarded']}; the original is from {e['original_from'] or '(unknown)'}")
    lines.append(f"classified: {e['classified']}" + (f"; {e['classified_reason']}" if e["classified_reason"] else ""))
    lines.append(f"considered: {', '.join(e['considered'])}")
    lines.append(f"matched:    {', '.join(e['matched']) or '-'}")
    lines.append(
        f"outcome:    {e['status']}"
        + (f" by {e['chosen']}" if e["chosen"] else "")
        + (f": {e['reason']}" if e["reason"] and e["status"] != "card" else "")
    )
    if e["card"]:
        lines.append("card:")
        width = max(len(key) for key in e["card"])
        for key, value in e["card"].items():
            shown = (
                "null"
                if value is None
                else (value.replace("\n", "\n" + " " * (width + 4)) if isinstance(value, str) else value)
            )
            lines.append(f"  {key:<{width}}  {shown}")
        lines.append(f"not found:  {', '.join(e['not_found']) or '-'}")
        if e["notes"]:
            lines.append(f"notes:      {'; '.join(e['notes'])}")
    typer.echo("\n".join(terminal_text(line) for line in lines))


# --- reading the queue --------------------------------------------------------------------------------------


@app.command()
def feed(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many cards to show.")] = 50,
    source: Annotated[str | None, typer.Option("--source", help="Only this source type (vk, site_form, ...).")] = None,
    product: Annotated[str | None, typer.Option("--product", help="Only cards about this product.")] = None,
    unclaimed: Annotated[bool, typer.Option("--unclaimed", help="Only cards nobody is responsible for.")] = False,
    mine: Annotated[bool, typer.Option("--mine", help="Only my cards (see --as).")] = False,
    open_only: Annotated[bool, typer.Option("--open", help="Only cards not processed yet.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """The queue of cards: unprocessed first, then newest first."""
    from interestd import store
    from interestd.services import card_record
    from interestd.services import feed as feed_service

    state = _state(ctx)
    settings = state.settings()
    query = store.FeedFilter(
        unclaimed=unclaimed,
        source_type=source,
        product=product,
        include_processed=not open_only,
        responsible=state.manager() if mine else None,
    )
    with state.database().session() as session:
        cards = feed_service(session, query, limit=limit)
    if as_json:
        _print_json([card_record(card) for card in cards])
        return
    _print_feed(cards, settings)


def _print_feed(cards: list[Any], settings: Settings) -> None:
    from interestd.safety import terminal_text

    if not cards:
        typer.echo("no cards")
        return
    headers = ["ref", "date", "source", "author", "action", "text", "product", "responsible", "done", "reply"]
    rows = []
    for card in cards:
        rows.append(
            [
                card.ref,
                _local(card.occurred_at, settings),
                card.source_type,
                _excerpt(card.author_name or card.author_email or card.author_phone or "", 24),
                card.action,
                _excerpt(card.text, 50),
                _excerpt(card.product or "", 20),
                terminal_text(card.responsible or ""),
                "yes" if card.processed else "",
                "replied" if card.replied else ("reply" if card.reply_url else ""),
            ]
        )
    if not _is_tty():
        _print_plain_table([headers, *rows])
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="ellipsis", no_wrap=header != "text")
    for card, row in zip(cards, rows, strict=True):
        cells = [Text(cell) for cell in row]
        if card.reply_url and not card.replied:
            cells[-1] = Text("↩ reply", style=f"bold link {card.reply_url}")
        elif card.replied:
            cells[-1] = Text("↩ replied", style="dim")
        style = "dim" if card.processed else None
        table.add_row(*cells, style=style)
    _console().print(table)


def _print_plain_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The card, e.g. INT-42.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card and its history as JSON.")] = False,
) -> None:
    """The whole card: every field, its reply link, and its history."""
    from interestd.services import card_by_ref, card_history, card_record, event_record

    state = _state(ctx)
    settings = state.settings()
    with state.database().session() as session:
        card = card_by_ref(session, ref)
        events = card_history(session, card)
    if as_json:
        _print_json({**card_record(card), "notes": card.notes, "history": [event_record(e) for e in events]})
        return
    _print_card(card, events, settings)


def _print_card(card: Any, events: list[Any], settings: Settings) -> None:
    from interestd.safety import terminal_text

    author = " ".join(
        part for part in (card.author_name, card.author_email and f"<{card.author_email}>", card.author_phone) if part
    )
    lines = [
        f"{card.ref}  {card.source_type} {card.action}  {_local(card.occurred_at, settings)}",
        f"source:      {card.source_url or '-'}",
        f"author:      {author or '-'}",
        f"profile:     {card.author_url or '-'}",
        f"photo:       {card.author_photo_url or '-'}",
        f"product:     {(card.product or '-')}{'  ' + card.product_url if card.product_url else ''}",
        f"responsible: {card.responsible or '-'}",
        f"processed:   {'yes, ' + _local(card.processed_at, settings) if card.processed else 'no'}",
        f"screenshot:  {card.screenshot or '-'}",
        f"reply:       {card.reply_url or '-'}{'  (replied)' if card.replied else ''}",
        f"parser:      {card.parser}   message: {card.message_id}",
    ]
    if card.notes:
        lines.append(f"notes:       {card.notes}")
    typer.echo("\n".join(terminal_text(line) for line in lines))
    typer.echo("")
    typer.echo(terminal_text(card.text) or "(no text)")
    typer.echo("")
    typer.echo("history:")
    for event in events:
        who = f" by {event.actor}" if event.actor else ""
        detail = f": {event.detail}" if event.detail else ""
        typer.echo(terminal_text(f"  {_local(event.at, settings)}  {event.kind}{who}{detail}"))


@app.command()
def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json, jsonl or csv.")] = "json",
    since: Annotated[str | None, typer.Option("--since", help="From this date (YYYY-MM-DD, local) or time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to the end of this date, or this time.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print cards with exactly the keys of card.schema.json, by the date the interest occurred."""
    from interestd.services import export_cards, parse_date_option

    if fmt not in ("json", "jsonl", "csv"):
        raise UsageError(f"unknown export format {fmt!r} (json, jsonl or csv)")
    state = _state(ctx)
    settings = state.settings()
    start = parse_date_option(since, settings.zone)
    end = parse_date_option(until, settings.zone, end=True)
    with state.database().session() as session:
        if output is None:
            export_cards(session, sys.stdout, fmt=fmt, since=start, until=end)
        else:
            try:
                with output.open("w", encoding="utf-8", newline="") as handle:
                    count = export_cards(session, handle, fmt=fmt, since=start, until=end)
            except OSError as exc:
                raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
            typer.echo(f"{count} cards written to {output}", err=True)


# --- a manager's work ---------------------------------------------------------------------------------------


@app.command()
def mine(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """My cards: unanswered first (the same as `feed --mine`)."""
    feed(ctx, limit=limit, source=None, product=None, unclaimed=False, mine=True, open_only=False, as_json=as_json)


def _act(ctx: typer.Context, action: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one manager action in a write transaction, as the manager speaking."""
    state = _state(ctx)
    login = state.manager()
    settings = state.settings()
    with state.database().session(write=True) as session:
        return action(session, settings, *args, login, **kwargs)


@app.command()
def claim(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(help="The card, e.g. INT-42.")] = None,
    next_card: Annotated[
        bool, typer.Option("--next", help="Take the open card that has waited longest (that you may take).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Take it even from another manager, route or capacity.")
    ] = False,
) -> None:
    """Take a card: it is yours to answer. Exactly one of several managers claiming at once wins."""
    from interestd import work

    if next_card == (ref is not None):
        raise UsageError("name the card to claim (INT-n) or use --next, not both")
    if next_card:
        if force:
            raise UsageError("--force goes with a named card, not --next")
        typer.echo(_act(ctx, work.claim_next))
        return
    typer.echo(_act(ctx, work.claim, ref, force=force))


@app.command()
def release(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The card, e.g. INT-42.")],
    force: Annotated[bool, typer.Option("--force", help="Release another manager's card.")] = False,
) -> None:
    """Give a card back to the queue."""
    from interestd import work

    typer.echo(
        _act(
            ctx, lambda session, _settings, ref, login, **kw: work.release(session, ref, login, **kw), ref, force=force
        )
    )


@app.command()
def assign(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The card, e.g. INT-42.")],
    login: Annotated[str, typer.Argument(help="The manager who gets it.")],
    why: Annotated[str | None, typer.Option("--why", help="A word for the history.")] = None,
) -> None:
    """Reassign a card, and its author's other open cards, to another manager."""
    from interestd import work

    state = _state(ctx)
    by = state.manager()
    with state.database().session(write=True) as session:
        moved = work.reassign(session, state.settings(), ref, login, by, why=why)
    typer.echo(
        f"{', '.join(moved)} now {'belong' if len(moved) > 1 else 'belongs'} to {login}"
        if moved
        else f"{ref.upper()} is already {login}'s"
    )


@app.command()
def done(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The card, e.g. INT-42.")],
    force: Annotated[bool, typer.Option("--force", help="Act on another manager's card.")] = False,
) -> None:
    """Mark a card processed without a screenshot (when [assignment] require_proof = false)."""
    from interestd import work

    typer.echo(_act(ctx, work.done, ref, force=force))


@app.command()
def attach(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The card, e.g. INT-42.")],
    screenshot: Annotated[str, typer.Argument(help="A PNG/JPEG/WebP/GIF file, or a screenshot-service link.")],
    force: Annotated[bool, typer.Option("--force", help="Act on another manager's card.")] = False,
) -> None:
    """Attach the screenshot of your reply: the card becomes processed, its reply button greyed."""
    from interestd import work

    typer.echo(_act(ctx, work.attach, ref, screenshot, force=force))


@app.command()
def reply(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The card, e.g. INT-42.")],
    open_it: Annotated[bool, typer.Option("--open", help="Open the link in the browser.")] = False,
) -> None:
    """Print where to answer (the comment, the dialog, mailto: or tel:); --open opens it."""
    from interestd.safety import safe_url, terminal_text
    from interestd.services import card_by_ref

    state = _state(ctx)
    with state.database().session() as session:
        card = card_by_ref(session, ref)
    link = safe_url(card.reply_url)
    if link is None:
        raise UsageError(f"{card.ref} has no reply link: answer through its source ({card.source_url or 'unknown'})")
    typer.echo(terminal_text(link) + ("  (already replied)" if card.replied else ""))
    if open_it:
        import webbrowser

        if not webbrowser.open(link):
            raise UsageError("no browser could be opened here: copy the link above")


@app.command()
def history(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The card, e.g. INT-42.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every change of a card: created, assigned, claimed, released, reassigned, screenshot, processed."""
    from interestd import work
    from interestd.safety import terminal_text
    from interestd.services import event_record

    state = _state(ctx)
    settings = state.settings()
    with state.database().session() as session:
        card, events = work.history(session, ref)
    if as_json:
        _print_json([event_record(event) for event in events])
        return
    typer.echo(f"{card.ref}: {card.source_type} {card.action} from {terminal_text(card.author_name) or '?'}")
    for event in events:
        who = f" by {event.actor}" if event.actor else ""
        whom = f" -> {event.manager}" if event.manager and event.kind in ("assigned", "claimed", "reassigned") else ""
        rule = f" [{event.rule}]" if event.rule else ""
        detail = f": {event.detail}" if event.detail else ""
        typer.echo(terminal_text(f"  {_local(event.at, settings)}  {event.kind}{whom}{who}{rule}{detail}"))


# --- the summary report -------------------------------------------------------------------------------------


@app.command()
def report(
    ctx: typer.Context,
    period: Annotated[
        str | None, typer.Option("--period", help="day, week or month (default: [report] period).")
    ] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="A date in the period (default: the last complete one).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the HTML report to this file.")] = None,
    send_it: Annotated[bool, typer.Option("--send", help="Mail it to [smtp] to.")] = False,
) -> None:
    """The summary report: every source side by side, products, managers, the queue, health."""
    from datetime import date

    from interestd.report.delivery import mail_report, make_report

    if period is not None and period not in ("day", "week", "month"):
        raise UsageError(f"unknown period {period!r} (day, week or month)")
    try:
        chosen_day = date.fromisoformat(day) if day else None
    except ValueError:
        raise UsageError(f"not a date: {day!r} (use YYYY-MM-DD)") from None
    state = _state(ctx)
    settings = state.settings()
    with state.database().session() as session:
        built_period, rendered = make_report(session, settings, kind=period, day=chosen_day)
    if out is not None:
        try:
            out.write_text(rendered.html, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
        typer.echo(f"{rendered.subject}: written to {out}", err=True)
    if send_it:
        mail_report(settings, rendered, built_period)
        typer.echo(f"{rendered.subject}: sent to {', '.join(settings.smtp.to) if settings.smtp else ''}", err=True)
    if out is None and not send_it:
        typer.echo(rendered.text)


# --- stored mail --------------------------------------------------------------------------------------------


@mail_app.command("list")
def mail_list(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="quarantined, skipped, card, proof or new (repeatable; default: quarantined and skipped)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stored messages by status, newest first, with the reason each one got its status."""
    from interestd import store
    from interestd.services import mail_list as mail_list_service
    from interestd.services import mail_record

    state = _state(ctx)
    settings = state.settings()
    with state.database().session() as session:
        rows = mail_list_service(session, statuses=status or ["quarantined", "skipped"], limit=limit)
        kept = store.kept_raw_ids(session, [raw.id for raw in rows if raw.id is not None])
    if as_json:
        _print_json([mail_record(raw, raw_kept=raw.id in kept) for raw in rows])
        return
    if not rows:
        typer.echo("no messages")
        return
    table = [["id", "status", "stored", "from", "subject", "reason"]]
    for raw in rows:
        table.append(
            [
                str(raw.id),
                raw.status,
                _local(raw.stored_at, settings),
                _excerpt(raw.sender or "", 30),
                _excerpt(raw.subject or "", 40),
                _excerpt(raw.reason or "", 70),
            ]
        )
    _print_plain_table(table)


@mail_app.command("show")
def mail_show(
    ctx: typer.Context,
    message: Annotated[int, typer.Argument(help="The stored message's id (see `mail list`).")],
    raw: Annotated[bool, typer.Option("--raw", help="Print the raw message bytes exactly as stored.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One stored message: where it came from, its status and reason, and the card it became."""
    from interestd import store
    from interestd.safety import terminal_text
    from interestd.services import mail_by_id, mail_card_ref, mail_record

    state = _state(ctx)
    with state.database().session() as session:
        stored = mail_by_id(session, message)
        data = store.raw_bytes(session, message)
        record = mail_record(stored, raw_kept=data is not None, card_ref=mail_card_ref(session, stored))
    if raw:
        if data is None:
            raise UsageError(f"the bytes of message {message} were not kept ({stored.reason})")
        sys.stdout.buffer.write(data)
        return
    if as_json:
        _print_json(record)
        return
    for key, value in record.items():
        typer.echo(terminal_text(f"{key + ':':16}{'' if value is None else value}"))


# --- configuration and database -----------------------------------------------------------------------------


@app.command("check-config")
def check_config(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate the configuration and print the settings in effect (secrets masked)."""
    import tomli_w

    from interestd.config import settings_for_display

    settings = _state(ctx).settings()
    data = settings_for_display(settings)
    if as_json:
        _print_json(data)
        return
    typer.echo(f"# {settings.source or 'no config file: built-in defaults'}")
    typer.echo(tomli_w.dumps(_drop_none(data)).rstrip())


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply schema migrations (safe to run twice, and from two hosts at once)."""
    from interestd.db import Database, upgrade

    settings = _state(ctx).settings()
    database = Database(settings.database_url, busy_timeout=settings.database.busy_timeout.total_seconds())
    try:
        before, after = upgrade(database)
    finally:
        database.dispose()
    if before == after:
        typer.echo(f"database schema is up to date ({after})")
    else:
        typer.echo(f"database schema upgraded: {before or 'empty'} -> {after}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the database's schema version and the one this interestd needs."""
    from interestd.db import SCHEMA_REVISION, Database, current_revision

    settings = _state(ctx).settings()
    database = Database(settings.database_url, busy_timeout=settings.database.busy_timeout.total_seconds())
    try:
        revision = current_revision(database.engine)
    finally:
        database.dispose()
    typer.echo(
        f"database: {settings.masked_database_url}\nschema:   {revision or 'empty'}\nneeded:   {SCHEMA_REVISION}"
    )
    if revision != SCHEMA_REVISION:
        raise typer.Exit(1)


# --- entry point --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr and an exit code (tracebacks only with --debug)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("INTERESTD_DEBUG") == "1"
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="interestd", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("interestd: aborted", err=True)
        sys.exit(130)
    except TyperException as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"interestd: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except InterestdError as exc:
        if debug:
            logging.getLogger("interestd").exception("error")
        typer.echo(f"interestd: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interestd: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        typer.echo(f"interestd: internal error: {type(exc).__name__}: {first} (run with --debug for details)", err=True)
        sys.exit(INTERNAL_ERROR_EXIT)
    sys.exit(result if isinstance(result, int) else 0)


def entry() -> None:
    """The `interestd` command and `python -m interestd`: main(), then the process ends at once.

    By then the command has closed its database. What the interpreter's own exit does first is done here too:
    wait for the threads still running, then run the exit handlers (log handlers, worker processes, temporary
    files). What is skipped is the interpreter freeing every module and object one by one: about 0.1 s after
    a 10,000-message poll, and a good part of a short command's time."""
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A reader that went away (`| head`), or a stream already closed, is not an error of the command's.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
