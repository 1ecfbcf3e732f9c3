"""``llama-desk ask``: one question (with images and PDFs) answered on stdout by the engine.

``--image FILE`` and ``--file FILE`` (an image or a PDF, told apart by its bytes) attach files,
in the order given; ``--pages 1-3,7`` chooses the pages of every PDF given (all by default).
A PDF's first chosen pages go as images (as many as the 5-images-a-message rule leaves after the
question's own images, and as the context holds), the rest as their text
(``desktop.cli.ask_attachments``); ``--json`` lists the ``attachments`` and how their pages went.

Streams the answer as it is generated, or with ``--json`` prints one JSON object with the
text, token ids and figures (an answer that fails, even before any text, still prints its
object, with finish_reason "error" and the reason as ``error``, then exits 1 with that reason
on stderr). Never opens a window and never imports Qt.

With ``--chat new`` the exchange is stored as a new conversation (its id is printed on stderr,
or as ``chat_id`` with ``--json``); with ``--chat ID`` the question continues that conversation,
its history (answers as the token ids they were generated as) going to the engine. The
exchange is a ``ConversationSession`` turn run by ``answer_run.run_answer``, as in the window:
the question is committed before generating and the answer as it streams.
Generation flags given with ``--chat`` become the conversation's settings; flags left out
take the conversation's stored ones. A conversation answers one question at a time: while
another command or the window is answering in it, ``--chat ID`` is refused with one line.
With ``--chat new``, the conversation, the question and the empty answer are stored in one
transaction, so a failure leaves nothing behind. With ``--chat``, the conversation's KV cache
is loaded from and saved to the same folder as the window's, so a follow-up prefills only
its new tokens (``cached_tokens`` in ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys

from desktop.cli.command_error import CommandError
from models.inference.settings_spec import SETTINGS, SettingSpec


def _flag_help(spec: SettingSpec) -> str:
    return spec.help if spec.default is None else f"{spec.help} (default {spec.default})"


def _chat_spec(value: str) -> str | int:
    if value == "new":
        return value
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use new or a conversation id (a number)") from None
    if number < 1:
        raise argparse.ArgumentTypeError("a conversation id is a positive number")
    return number


class _Attach(argparse.Action):
    """``--image`` and ``--file``: each appends to its own list and, in the order given, to
    ``attached`` as (kind, path) pairs."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        attached = getattr(namespace, "attached", None) or []
        namespace.attached = [*attached, (self.dest, values)]


def add_parser(sub) -> None:
    parser = sub.add_parser("ask", help="answer one question on the command line")
    parser.add_argument("--model", help="checkpoint folder or downloaded repo id (default: the last opened)")
    parser.add_argument(
        "--image",
        action=_Attach,
        default=[],
        metavar="FILE",
        help="attach an image (repeat for several, at most 5)",
    )
    parser.add_argument(
        "--file",
        action=_Attach,
        default=[],
        metavar="FILE",
        help="attach a PDF or an image (repeat for several); a PDF's first pages go as images "
        "(5 images a message in all), the rest as text",
    )
    parser.add_argument(
        "--pages",
        metavar="1-3,7",
        help="the pages of the PDFs given with --file to attach (the same for each; default all)",
    )
    parser.add_argument("--system", help="system prompt")
    for spec in SETTINGS:  # left out: the conversation's value, else the default
        parser.add_argument(spec.flag, type=spec.kind, help=_flag_help(spec))
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--chat",
        type=_chat_spec,
        metavar="new|ID",
        help="store the exchange in a new conversation, or continue conversation ID",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ranks", type=int, help="split the model over N ranks on this machine (trying out)")
    where.add_argument(
        "--hosts", metavar="HOSTS.json", help="split the model over the Macs of an mlx.launch host file"
    )
    parser.add_argument("prompt", help="the question")
    parser.set_defaults(run=run, attached=[])


def _check_args(args: argparse.Namespace) -> None:
    from models.chats.conversation_records import setting_problem

    # The ranges a stored conversation, an import and the Settings dialog hold to.
    if problem := setting_problem("system_prompt", args.system):
        raise CommandError(f"--system {problem}.", 2)
    for spec in SETTINGS:
        if problem := spec.problem(getattr(args, spec.name)):
            raise CommandError(f"{spec.flag} {problem}.", 2)
    if args.ranks is not None and args.ranks < 1:
        raise CommandError("--ranks must be at least 1.", 2)
    if not args.prompt.strip() and not args.image and not args.file:
        raise CommandError("the prompt is empty.", 2)


def _chat_settings(args: argparse.Namespace, stored):
    """The conversation's settings with the flags given on this command line applied."""
    from dataclasses import replace

    names = [spec.name for spec in SETTINGS if spec.per_conversation]
    changes = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.system is not None:
        changes["system_prompt"] = args.system
    return replace(stored, **changes)


def _answer_only(args: argparse.Namespace) -> dict:
    """The flags given for settings a conversation does not keep: for this answer only."""
    names = [spec.name for spec in SETTINGS if not spec.per_conversation]
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _open_chat(args: argparse.Namespace):
    """The store, the conversation to continue (None for ``--chat new``) and the recorder,
    which holds that conversation's lock for the whole turn."""
    from desktop.cli.chats import store_failure
    from models.chats.answer_recorder import AnswerRecorder
    from models.chats.database import StoreError
    from models.chats.store import ConversationStore

    try:
        store = ConversationStore()
        if store.db.read_only:
            raise StoreError(
                f"The conversation database {store.db.path} is read-only (its folder or file "
                "cannot be written); --chat cannot store this exchange."
            )
        recorder = AnswerRecorder(store)
        conversation = None
        if args.chat != "new":
            conversation = store.conversation(args.chat)
            recorder.claim(conversation.id)
    except StoreError as exc:
        raise store_failure(exc) from None
    return store, conversation, recorder


def _ask(args: argparse.Namespace, session, engine, images: tuple, documents: tuple, store, conversation):
    """The session's job for this question, and its documents as they go (page images that do
    not fit the context go as text): with ``--chat``, the stored history first, and the
    conversation (created, or its settings updated) stored with the question."""
    from desktop.cli.ask_attachments import fit_documents
    from models.chats.conversation_session import stored_turns
    from models.chats.store import ConversationSettings
    from models.inference.engine import GenerationSettings

    base = conversation.settings if conversation is not None else ConversationSettings()
    chat_settings = _chat_settings(args, base)
    create_with = store_settings = None
    if store is None:
        system_prompt = args.system
    else:
        system_prompt = chat_settings.system_prompt if chat_settings.system_prompt.strip() else None
        if conversation is None:
            create_with = chat_settings
        else:
            session.show(stored_turns(store, conversation.id), conversation.id)
            if chat_settings != conversation.settings:
                store_settings = chat_settings
    settings = chat_settings.generation_settings(GenerationSettings(**_answer_only(args)))
    if documents:
        history = session.messages(system_prompt)
        fitted, fits = fit_documents(engine, history, args.prompt, images, documents, settings)
        if fits and fitted != documents:
            demoted = [d.name for d, before in zip(fitted, documents, strict=True) if d != before]
            print(
                f"llama-desk: some pages of {', '.join(demoted)} go as text: their images do not fit "
                "the context.",
                file=sys.stderr,
            )
        documents = fitted
    job = session.ask(
        args.prompt,
        images,
        documents=documents,
        settings=settings,
        system_prompt=system_prompt,
        create_with=create_with,
        store_settings=store_settings,
    )
    return job, documents


def _open_kv_cache(store, conversation, engine, settings):
    """With ``--chat``, the conversations' KV caches (``ConversationCaches``); for ``--chat ID``
    the conversation's saved cache becomes the engine's. None without ``--chat``."""
    if store is None:
        return None
    from models.inference.conversation_caches import ConversationCaches
    from models.inference.prompt_cache_keeper import FOLDER_NAME, PromptCacheKeeper

    caches = ConversationCaches(PromptCacheKeeper(store.folder / FOLDER_NAME))
    if conversation is not None:
        caches.open(engine, conversation.id, settings)
    return caches


def _print_json(final, session, ended, ranks: int, emptied: bool, attachments: list[dict]) -> None:
    """The answer as one JSON object; ``emptied``: it failed before any text, and the session
    put its turns back as they were (its last turn is not this answer)."""
    out = {
        "text": "" if emptied else session.turn(-1).text,
        "token_ids": list(final.token_ids),
        "prompt_token_ids": list(final.prompt_token_ids),
        "prompt_tokens": final.prompt_tokens,
        "cached_tokens": final.cached_tokens,
        "generation_tokens": final.generation_tokens,
        "ttft_s": round(final.ttft_s, 6),
        "prompt_tps": round(final.prompt_tps, 3),
        "generation_tps": round(final.generation_tps, 3),
        "peak_memory_gb": round(final.peak_memory_gb, 6),
        "finish_reason": final.finish_reason,
        "ranks": ranks,
        "attachments": attachments,
    }
    if final.finish_reason == "error":
        out["error"] = final.error or "generation failed."
    if session.conversation_id is not None:
        out["chat_id"] = session.conversation_id
        out["message_id"] = ended.stored_answer_id
    print(json.dumps(out, ensure_ascii=False))


def run(args: argparse.Namespace) -> int:
    from desktop.cli.ask_attachments import attachment_json, read_attachments, read_documents
    from desktop.cli.chats import store_failure
    from models.chats.answer_run import AnswerEnded, StorageFailed, TextGenerated, run_answer
    from models.chats.conversation_session import ConversationSession
    from models.chats.database import StoreError
    from models.hub.store import ModelNotFound, resolve_model
    from models.inference.checkpoint import CheckpointError
    from models.inference.engine import ModelLoadError

    _check_args(args)
    if not args.model:
        from desktop.cli.window_settings import last_model

        args.model = last_model()
    attachments = read_attachments(args.attached, args.pages)  # checked before a model loads
    store = conversation = recorder = None
    if args.chat is not None:
        store, conversation, recorder = _open_chat(args)
    from models.distributed.hosts import HostFileError
    from models.distributed.launcher import ClusterError
    from models.distributed.load import cluster_hosts, load_engine

    try:
        engine = load_engine(resolve_model(args.model), cluster_hosts(args.ranks, args.hosts))
    except (ModelNotFound, CheckpointError, ModelLoadError, HostFileError, ClusterError) as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - whatever else fails while loading is one line too
        cause = " ".join(str(exc).split()) or type(exc).__name__
        raise CommandError(f"Could not load {args.model}: {cause}") from None

    images, documents = read_documents(attachments, engine.encoder.processor)
    session = ConversationSession()
    try:
        job, documents = _ask(args, session, engine, images, documents, store, conversation)
    except StoreError as exc:
        raise store_failure(exc) from None
    kv_caches = _open_kv_cache(store, conversation, engine, job.settings)
    opener = (lambda: store) if store is not None else None
    run_events = run_answer(engine, job, opener, recorder=recorder, coalesce_s=0)
    ended = None
    emptied = False  # the answer failed before any text (its turn is gone from the session)
    try:
        for event in run_events:
            emptied = session.apply(event)
            if isinstance(event, StorageFailed):  # not saved: stop rather than lose it silently
                raise store_failure(event.cause)
            if isinstance(event, TextGenerated) and not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, AnswerEnded):
                ended = event
    except BaseException:  # Ctrl-C (or a failure): keep what was generated, marked interrupted
        job.cancel.set()
        run_events.close()
        raise
    if ended is None:  # run_answer always ends with AnswerEnded; say so if it ever does not
        raise CommandError("the answer ended without a result.")
    final = ended.final
    if kv_caches is not None:  # the conversation's KV cache, for its next question
        if session.conversation_id is not None:
            kv_caches.keep(engine, session.conversation_id, final)
        kv_caches.keeper.close()
    if args.json:
        listed = attachment_json(attachments, documents)
        _print_json(final, session, ended, getattr(engine, "ranks", 1), emptied, listed)
    else:
        sys.stdout.write("\n")
    stored = session.conversation_id is not None and ended.stored_answer_id is not None
    if final.finish_reason == "error":
        where = f" (saved in conversation {session.conversation_id})" if stored else ""
        raise CommandError((final.error or "generation failed.") + where)
    if stored and not args.json:
        print(f"Saved in conversation {session.conversation_id}.", file=sys.stderr)
    return 0
