"""``llama-desk models list|pull|rm|path|add|login|logout``: the model store on the command line.

- ``list [--json] [--online]``: the Llama 4 catalog, the models the person added and the Llama 4
  repos already in the shared Hugging Face cache, with status and sizes (``--online`` asks the
  Hub whether each repo is available, gated or missing, and for its real size).
- ``pull REPO [--accept-license]``: download into the shared cache with progress on stderr;
  resumable (run it again after a failure or Ctrl+C); prints the snapshot folder on stdout.
  A Llama 4 repo needs the Llama 4 Community License accepted first.
- ``rm REPO``: delete a downloaded repo (or forget an added one; folders are never deleted).
- ``path REPO``: the folder a downloaded repo (or a folder) resolves to, offline.
- ``add FOLDER|REPO``: add a checkpoint folder or Hub repo id to the list.
- ``login`` / ``logout``: keep a Hugging Face token in the OS keychain, or remove it.

Every failure is a one-line ``CommandError``; the logic lives in ``models.hub.store``,
``models.hub.catalog`` and ``models.hub.license``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from desktop.cli.command_error import CommandError
from models.byte_sizes import format_bytes


def add_subcommands(models_sub) -> None:
    listing = models_sub.add_parser("list", help="list catalog, added and downloaded models")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.add_argument("--online", action="store_true", help="ask the Hub for availability and real sizes")
    listing.set_defaults(run=run_list)

    pull = models_sub.add_parser("pull", help="download a model from the Hugging Face Hub (resumable)")
    pull.add_argument("repo", metavar="REPO", help="Hub repo id, e.g. mlx-community/Llama-4-Scout-...-4bit")
    pull.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    pull.add_argument(
        "--accept-license", action="store_true", help="accept the Llama 4 Community License (recorded once)"
    )
    pull.set_defaults(run=run_pull)

    remove = models_sub.add_parser("rm", help="delete a downloaded model, or forget an added one")
    remove.add_argument("repo", metavar="REPO")
    remove.set_defaults(run=run_rm)

    path = models_sub.add_parser("path", help="print the folder a downloaded model resolves to")
    path.add_argument("repo", metavar="REPO")
    path.set_defaults(run=run_path)

    add = models_sub.add_parser("add", help="add a checkpoint folder or Hub repo id to the list")
    add.add_argument("spec", metavar="FOLDER|REPO")
    add.add_argument("--name", help="display name")
    add.set_defaults(run=run_add)

    login = models_sub.add_parser("login", help="store a Hugging Face access token in the OS keychain")
    login.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    login.set_defaults(run=run_login)

    logout = models_sub.add_parser("logout", help="remove the stored Hugging Face token")
    logout.set_defaults(run=run_logout)


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes:02d}:{secs:02d}"


# -- list -----------------------------------------------------------------------------------------


def _listing_json(row) -> dict:
    entry = row.entry
    return {
        "key": row.key,
        "repo_id": entry.repo_id,
        "display_name": entry.display_name,
        "family": entry.family,
        "source": entry.source,
        "status": row.status,
        "size_bytes": row.size_bytes,
        "size_estimated": row.size_estimated,
        "bytes_on_disk": row.bytes_on_disk,
        "path": str(row.path) if row.path else None,
        "bits": entry.bits,
        "total_params": entry.total_params,
        "active_params": entry.active_params,
        "experts": entry.experts,
        "message": row.message,
    }


def run_list(args: argparse.Namespace) -> int:
    from models.hub.catalog import CatalogError, list_models

    try:
        rows = list_models(online=args.online)
    except CatalogError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps([_listing_json(row) for row in rows], indent=2))
        return 0
    for row in rows:
        size = ("~" if row.size_estimated else "") + format_bytes(row.size_bytes)
        if row.status == "partial":
            size = f"{format_bytes(row.bytes_on_disk)} of {size}"
        line = f"{row.status:<12} {size:>20}  {row.key}"
        if row.message and row.status not in ("downloaded", "available", "local"):
            line += f"  ({row.message})"
        print(line)
    return 0


# -- pull -----------------------------------------------------------------------------------------


class _ProgressPrinter:
    """Progress on stderr: one rewritten line on a terminal, a line per finished file otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.files_done = -1
        self.width = 0

    def __call__(self, p) -> None:
        pct = 100.0 * p.bytes_done / p.bytes_total if p.bytes_total else 100.0
        line = (
            f"{p.file} {format_bytes(p.bytes_done)}/{format_bytes(p.bytes_total)} {pct:5.1f}% "
            f"{format_bytes(p.speed_bps)}/s ETA {_format_eta(p.eta_s)}"
        )
        if self.tty:
            sys.stderr.write("\r" + line.ljust(self.width))
            self.width = max(self.width, len(line))
        elif p.files_done != self.files_done:
            self.files_done = p.files_done
            sys.stderr.write(f"[{p.files_done}/{p.files_total}] {line}\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _require_license(repo: str, accept: bool) -> None:
    from models.app_folders import UserDataError
    from models.hub import license

    if not license.requires_license(repo) or license.license_accepted():
        return
    if accept:
        try:
            license.accept_license()
        except UserDataError as exc:
            raise CommandError(str(exc)) from None
        print(f"Recorded your acceptance of the {license.LICENSE_NAME}.", file=sys.stderr)
        return
    print(license.LICENSE_SUMMARY)
    raise CommandError(
        f"{repo} is under the {license.LICENSE_NAME}: read the summary above, then run "
        f"`llama-desk models pull {repo} --accept-license` to accept it and download."
    )


def run_pull(args: argparse.Namespace) -> int:
    from models.hub import store

    repo = args.repo.strip()
    if not store.is_repo_id(repo):
        raise CommandError(f"{repo} is not a Hub repo id (owner/name).", 2)
    _require_license(repo, args.accept_license)
    printer = _ProgressPrinter()
    started = time.monotonic()
    try:
        path = store.download_model(
            repo, revision=args.revision, progress=printer, progress_interval_s=0.2 if printer.tty else 0.0
        )
    except store.DownloadCancelled as exc:
        printer.end()
        raise CommandError(str(exc), 130) from None
    except store.GatedRepoError as exc:
        printer.end()
        raise CommandError(f"{exc} (`llama-desk models login` stores a token.)") from None
    except store.StoreError as exc:
        printer.end()
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        printer.end()
        raise CommandError(
            f"download of {repo} cancelled; what was fetched is kept: run the same command again to resume.",
            130,
        ) from None
    printer.end()
    model = store.downloaded_model(repo)
    size = format_bytes(model.size_on_disk) if model else "?"
    print(f"Downloaded {repo} ({size}) in {time.monotonic() - started:.1f} s.", file=sys.stderr)
    print(path)
    return 0


# -- rm / path / add --------------------------------------------------------------------------------


def run_rm(args: argparse.Namespace) -> int:
    from models.hub import catalog, store

    spec = args.repo.strip()
    forgotten = False
    try:
        forgotten = catalog.remove_user_model(spec)
    except catalog.CatalogError as exc:
        raise CommandError(str(exc)) from None
    if forgotten:
        print(f"Removed {spec} from the list.", file=sys.stderr)
    if store.is_repo_id(spec) and store.downloaded_model(spec) is not None:
        try:
            freed = store.delete_model(spec)
        except store.StoreError as exc:
            raise CommandError(str(exc)) from None
        print(f"Deleted {spec} ({format_bytes(freed)} freed).", file=sys.stderr)
        return 0
    if not forgotten:
        raise CommandError(f"{spec} is not downloaded.")
    return 0


def run_path(args: argparse.Namespace) -> int:
    from models.hub.store import ModelNotFound, resolve_model

    try:
        print(resolve_model(args.repo.strip()))
    except ModelNotFound as exc:
        raise CommandError(str(exc)) from None
    return 0


def run_add(args: argparse.Namespace) -> int:
    from models.hub.catalog import CatalogError, add_user_model

    try:
        entry = add_user_model(args.spec, args.name)
    except CatalogError as exc:
        raise CommandError(str(exc)) from None
    print(f"Added {entry.display_name} ({entry.key}).", file=sys.stderr)
    return 0


# -- login / logout -----------------------------------------------------------------------------------


def run_login(args: argparse.Namespace) -> int:
    from models.hub.store import TokenStoreError, set_token

    if args.token_stdin:
        token = sys.stdin.readline().strip()
    else:
        import getpass

        try:
            token = getpass.getpass("Hugging Face access token (hf_...): ").strip()
        except EOFError:
            token = ""
    if not token:
        raise CommandError("no token given.", 2)
    try:
        set_token(token)
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None
    print("Token stored in the system keychain.", file=sys.stderr)
    return 0


def run_logout(args: argparse.Namespace) -> int:
    from models.hub.store import TokenStoreError, clear_token

    try:
        clear_token()
    except TokenStoreError as exc:
        raise CommandError(str(exc)) from None
    print("Token removed from the system keychain.", file=sys.stderr)
    return 0
