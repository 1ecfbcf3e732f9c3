"""``llama-desk chats ...``: the stored conversations on the command line.

``list``, ``show ID``, ``export ID --format md|json [--out PATH]``, ``search TEXT``,
``import FILE``, ``delete ID`` and ``repair`` (move a damaged database aside and start a
new one), on the store in the data folder (``$LLAMA_DESK_DATA_DIR`` overrides it). A read-only
data folder can still be listed, shown, searched and exported from.
Conversations are made by ``llama-desk ask --chat new`` and the window. Never imports Qt.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from desktop.cli.command_error import CommandError

REPAIR_ADVICE = "Run `llama-desk chats repair` to move it aside and start a new one; the old file is kept."


def store_failure(exc: Exception) -> CommandError:
    """The one-line command error for a store failure; a damaged database comes with what to do."""
    from models.chats.database import DatabaseDamaged

    if isinstance(exc, DatabaseDamaged):
        return CommandError(f"{exc} {REPAIR_ADVICE}")
    return CommandError(str(exc))


def add_parser(sub) -> None:
    parser = sub.add_parser("chats", help="list, show, search, export and import stored conversations")
    chats = parser.add_subparsers(dest="chats_command", metavar="SUBCOMMAND", required=True)

    listing = chats.add_parser("list", help="stored conversations, most recent first")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(run=run_list)

    show = chats.add_parser("show", help="print a conversation")
    show.add_argument("id", type=int, help="conversation id")
    show.set_defaults(run=run_show)

    export = chats.add_parser("export", help="write a conversation as Markdown or JSON")
    export.add_argument("id", type=int, help="conversation id")
    export.add_argument(
        "--format",
        choices=("md", "json"),
        required=True,
        help="md: Markdown with images beside it; json: self-contained, for import",
    )
    export.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="file to write (Markdown images go to PATH's NAME_images/); default stdout",
    )
    export.set_defaults(run=run_export)

    search = chats.add_parser("search", help="find messages holding every word of TEXT")
    search.add_argument("text", help="words to find (word prefixes match)")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--json", action="store_true", help="print a JSON list")
    search.set_defaults(run=run_search)

    importing = chats.add_parser(
        "import", help="add a conversation from an export (JSON, or Markdown with its files beside it)"
    )
    importing.add_argument("file", type=Path)
    importing.add_argument("--json", action="store_true", help='print {"chat_id": ID}')
    importing.set_defaults(run=run_import)

    delete = chats.add_parser("delete", help="delete a conversation (also one listed as damaged)")
    delete.add_argument("id", type=int, help="conversation id")
    delete.set_defaults(run=run_delete)
    repair = chats.add_parser("repair", help="move a damaged conversation database aside and start a new one")
    repair.set_defaults(run=run_repair)


def _open_store():
    from models.chats.database import StoreError
    from models.chats.store import ConversationStore

    try:
        return ConversationStore()
    except StoreError as exc:
        raise store_failure(exc) from None


def _when(timestamp: float) -> str:
    """The local date and time, or a placeholder for a time no calendar can show."""
    try:
        return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "????-??-?? ??:??"


def _store_errors(function):
    """Turn the store's failures (unknown id, damaged file...) into one-line command errors."""

    def wrapper(args: argparse.Namespace) -> int:
        from models.chats.database import StoreError

        store = _open_store()
        try:
            return function(store, args)
        except StoreError as exc:
            raise store_failure(exc) from None
        except OSError as exc:
            name = getattr(exc, "filename", None) or "file"
            raise CommandError(f"{name}: {exc.strerror or exc}.") from None
        finally:
            store.close()

    return wrapper


@_store_errors
def run_list(store, args: argparse.Namespace) -> int:
    conversations = store.list_conversations()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": c.id,
                        "title": c.display_title,
                        "created": c.created,
                        "updated": c.updated,
                        "messages": c.message_count,
                        **({"damaged": c.damaged} if c.damaged else {}),
                    }
                    for c in conversations
                ],
                ensure_ascii=False,
            )
        )
        return 0
    if not conversations:
        print("No conversations yet; start one with `llama-desk ask --chat new ...`.")
        return 0
    width = max(len(str(c.id)) for c in conversations)
    for c in conversations:
        title = c.display_title
        if c.damaged:
            title += f" ({c.damaged}; `llama-desk chats delete {c.id}` removes it)"
        when = _when(c.updated) if not c.damaged else "????-??-?? ??:??"
        print(f"{c.id:>{width}}  {when}  {c.message_count:>3} msgs  {title}")
    return 0


@_store_errors
def run_show(store, args: argparse.Namespace) -> int:
    from models.chats.export import render_markdown

    sys.stdout.write(render_markdown(store, store.conversation(args.id).id))
    return 0


@_store_errors
def run_export(store, args: argparse.Namespace) -> int:
    from models.chats.export import export_json, export_markdown, render_markdown, write_json

    conversation = store.conversation(args.id)
    if args.out is None:
        if args.format == "json":
            print(json.dumps(export_json(store, conversation.id), ensure_ascii=False, indent=1))
        elif any(m.images for m in store.messages(conversation.id)):
            raise CommandError("this conversation has images; give --out FILE.md to write them beside it.", 2)
        else:
            sys.stdout.write(render_markdown(store, conversation.id))
        return 0
    if args.out.is_dir():
        raise CommandError(f"{args.out} is a folder; give a file name.", 2)
    if args.format == "json":
        path = write_json(store, conversation.id, args.out)
    else:
        path = export_markdown(store, conversation.id, args.out)
    print(f"Wrote {path}", file=sys.stderr)
    return 0


@_store_errors
def run_search(store, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError("--limit must be at least 1.", 2)
    hits = store.search(args.text, limit=args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "chat_id": h.conversation_id,
                        "message_id": h.message_id,
                        "title": h.title,
                        "role": h.role,
                        "snippet": h.snippet,
                        "created": h.created,
                    }
                    for h in hits
                ],
                ensure_ascii=False,
            )
        )
        return 0
    if not hits:
        print(f"Nothing found for {args.text!r}.", file=sys.stderr)
        return 1
    for h in hits:
        snippet = " ".join(h.snippet.split())
        print(f"{h.conversation_id}#{h.message_id}  {h.title}: {snippet}")
    return 0


@_store_errors
def run_import(store, args: argparse.Namespace) -> int:
    from models.chats.export import read_export

    conversation_id = read_export(store, args.file)
    if args.json:
        print(json.dumps({"chat_id": conversation_id}))
    else:
        title = store.conversation(conversation_id).display_title
        print(f"Imported as conversation {conversation_id}: {title}")
    return 0


@_store_errors
def run_delete(store, args: argparse.Namespace) -> int:
    title = store.conversation(args.id).display_title
    store.delete(args.id)
    print(f"Deleted conversation {args.id}: {title}", file=sys.stderr)
    return 0


def run_repair(args: argparse.Namespace) -> int:
    """Check the database; if it is damaged, move it (and its -wal/-shm) aside and start a new one."""
    from models.chats.database import (
        DATABASE_NAME,
        Database,
        DatabaseDamaged,
        StoreError,
        data_dir,
        move_aside,
    )

    path = data_dir() / DATABASE_NAME
    if not path.exists():
        print(f"There is no conversation database at {path} yet; nothing to repair.")
        return 0
    problem = None
    try:
        database = Database(path)
    except DatabaseDamaged as exc:
        problem = str(exc)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    else:
        try:
            verdict = database.integrity_check()
            if verdict != "ok":
                problem = f"The conversation database {path} is damaged ({verdict})."
        except DatabaseDamaged as exc:
            problem = str(exc)
        except StoreError as exc:
            raise CommandError(str(exc)) from None
        finally:
            database.close()
    if problem is None:
        print(f"The conversation database {path} is sound; nothing to repair.")
        return 0
    try:
        moved = move_aside(path)
        Database(path).close()
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    print(
        f"{problem} Moved it to {moved} (kept; its conversations may still be exported from it with "
        f"SQLite tools) and started a new, empty one."
    )
    return 0
