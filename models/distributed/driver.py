"""Rank 0: the ``Engine`` of a model split across a cluster.

``PipelineEngine`` is the single-machine ``Engine`` (prompt, images, KV reuse across turns,
sampling, cancel, figures) with its language model swapped for ``PipelineLM``: rank 0 embeds the
tokens (and merges the image features, from the vision tower it keeps), runs its own layers,
sends the hidden states down the ring and receives the last position's logits from the last
rank. Each rank keeps the KV caches of its own layers; a header tells them how far rank 0's
caches reach, so a turn that reuses (trims) the cache trims theirs too, and which of rank 0's
caches it is (``PipelineLM.generation``, changed whenever rank 0's cache is replaced), so a rank
never continues another conversation's cache. A conversation's saved cache is kept and restored
on every rank, each its own layers' share (``save_rank_caches``, ``adopt_cache`` with the
conversation's id; ``models.distributed.rank_caches``): all ranks restore, or none does. A rank that stops or
cannot be reached ends the answer with an error naming the host (``RankLost``), and so does one
that hangs: no reply within ``reply_timeout_s`` (``models.distributed.watchdog``); the engine then
refuses further answers with the same message, and closing it ends the other ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.distributed.hosts import HostFile
from models.distributed.launcher import Cluster
from models.distributed.rank_caches import restore_payload, save_payload
from models.distributed.watchdog import ReplyWatchdog, default_timeout_s
from models.distributed.wire import PROTOCOL, Command, Header, dtype_name, payload_array, recv, send
from models.inference.cache_snapshot import CacheSnapshot, fitting_caches
from models.inference.engine import Engine, GenerationSettings

RESTORE_PATIENCE = 10.0  # a RESTORE may take this many reply timeouts (ranks read files in turn)


class RankLost(RuntimeError):
    """A rank of the cluster stopped or cannot be reached; the message names its host."""


class PipelineLM:
    """What mlx-lm's ``generate_step`` calls, run across the ranks (see the module docstring)."""

    def __init__(self, stage, cluster: Cluster, vocab: int, reply_timeout_s: float | None = None):
        self.stage = stage
        self.cluster = cluster
        self.vocab = vocab
        self.reply_timeout_s = reply_timeout_s or default_timeout_s()
        self.kv: tuple[int, int] = (0, 64)
        self.generation = 0  # which cache rank 0 holds (Header.cache); changed when it is replaced
        self.failure: str | None = None

    @property
    def layers(self):
        return self.stage.layers

    def make_cache(self):
        return self.stage.make_cache()

    def _checked(self, call: Callable, watched: bool = True, patience: float = 1.0):
        """Run ``call`` (an exchange with the ranks) under the watchdog, which waits ``patience``
        times the reply timeout (or for ever, ``watched`` False)."""
        if self.failure is not None:
            raise RankLost(self.failure)
        with ReplyWatchdog(self.cluster, self.reply_timeout_s * patience if watched else None) as watchdog:
            try:
                return call()
            except RuntimeError as exc:
                if watchdog.message is None and "ring" not in str(exc) and "peer" not in str(exc):
                    raise
                self.failure = watchdog.message or self.cluster.describe_failure()
                raise RankLost(self.failure) from None

    def __call__(self, inputs, cache=None, input_embeddings=None):
        import mlx.core as mx

        if input_embeddings is not None:
            h = input_embeddings
        else:
            h = self.stage.model.language_model.model.embed_tokens(inputs)
        offset = cache[0].offset
        out = self.stage.forward(h, cache)
        mx.eval(out)
        group, size = self.cluster.group, self.cluster.size
        header = Header(Command.RUN, out.shape[1], offset, dtype_name(out.dtype), *self.kv, self.generation)

        def exchange():
            send(header.to_array(), 1, group)
            send(out, 1, group)
            return recv((1, 1, self.vocab), mx.float32, size - 1, group)

        # The last rank sends float32 (exact for bf16 logits); back in the model's own dtype, the
        # sampler sees what one machine's model returns (mlx-lm takes log-probabilities in the
        # logits' dtype, and bf16 rounding decides near-ties: float32 here would differ).
        return self._checked(exchange).astype(out.dtype)

    def peak_memory(self, watched: bool = True) -> list[float]:
        """Each rank's peak memory in bytes (``mx.get_peak_memory`` on that rank); also a round
        trip through every rank, which answer only once they have loaded their layers
        (``watched`` False: no watchdog, as loading takes as long as it takes)."""
        import mlx.core as mx

        group, size = self.cluster.group, self.cluster.size
        peaks = mx.zeros((size,), dtype=mx.float32)
        peaks[0] = mx.get_peak_memory()

        def exchange():
            send(Header(Command.STATS).to_array(), 1, group)
            send(peaks, 1, group)
            return recv((size,), mx.float32, size - 1, group)

        return [float(v) for v in self._checked(exchange, watched).tolist()]

    def save(self, conversation_id: int | str, snapshot: CacheSnapshot, budget_bytes: int) -> None:
        """Ask ranks 1..N-1 to save their layers' cache, holding ``snapshot``'s positions, as the
        conversation's (they write it in the background; no reply)."""
        payload = payload_array(save_payload(conversation_id, snapshot, budget_bytes))
        tokens, generation = snapshot.tokens, self.generation
        header = Header(Command.SAVE, payload.size, tokens, "float32", *_kv(snapshot), generation)

        def exchange():
            send(header.to_array(), 1, self.cluster.group)
            send(payload, 1, self.cluster.group)

        self._checked(exchange)

    def restore(self, conversation_id: int | str, snapshot: CacheSnapshot, generation: int) -> bool:
        """Ask ranks 1..N-1 to restore their layers' saved cache of the conversation, holding
        ``snapshot``'s keys, as cache ``generation``; True when every one of them did."""
        import mlx.core as mx

        group, size = self.cluster.group, self.cluster.size
        payload = payload_array(restore_payload(conversation_id, snapshot))
        header = Header(Command.RESTORE, payload.size, snapshot.tokens, "float32", *_kv(snapshot), generation)
        flags = mx.zeros((size,), dtype=mx.float32)
        flags[0] = 1.0

        def exchange():
            send(header.to_array(), 1, group)
            send(payload, 1, group)
            send(flags, 1, group)
            return recv((size,), mx.float32, size - 1, group)

        # Each rank first finishes its own pending save, then reads its file, one after another
        # down the ring: a slow disk is not a hung rank (that only costs the cluster).
        return all(v == 1.0 for v in self._checked(exchange, patience=RESTORE_PATIENCE).tolist())

    def stop(self) -> None:
        if self.failure is None:
            try:
                send(Header(Command.STOP).to_array(), 1, self.cluster.group)
            except RuntimeError:
                pass
        self.cluster.stop()


def _kv(snapshot: CacheSnapshot) -> tuple[int, int]:
    return (int(snapshot.kv[0]), int(snapshot.kv[1])) if snapshot.kv else (0, 64)


class PipelineEngine(Engine):
    """An ``Engine`` whose decoder layers are spread over the ranks of a cluster."""

    def __init__(self, checkpoint, model, tokenizer, lm: PipelineLM, split: tuple[tuple[int, int], ...]):
        super().__init__(checkpoint, model, tokenizer)
        self._lm = lm
        self.pipeline: PipelineLM | None = lm  # None once closed (its stage's weights freed)
        self.split = split

    @property
    def ranks(self) -> int:
        assert self.pipeline is not None, "the engine is closed"
        return self.pipeline.cluster.size

    @classmethod
    def load_cluster(
        cls,
        path: str | Path,
        hosts: HostFile | None,
        shares: list[float] | None = None,
        progress: Callable[[str], None] | None = None,
        reply_timeout_s: float | None = None,
    ) -> PipelineEngine:
        """Start ranks 1..N-1 on ``hosts``, join them, and load rank 0's share of the model.
        ``shares`` weighs the layer split (default: the hosts' ``memory_gb``, else equal);
        ``reply_timeout_s`` how long rank 0 waits for a reply before calling a rank hung.
        ``hosts`` None: this process is rank 0 of a job ``mlx.launch`` started, whose other
        ranks run ``models.distributed.worker`` without ``--start``/``--end`` (equal split)."""
        from models.inference.checkpoint import read_checkpoint
        from models.memory.cluster_plan import split_layers

        checkpoint = read_checkpoint(path)
        layers = int(checkpoint.config["text_config"]["num_hidden_layers"])
        if hosts is None:
            cluster = Cluster.joined()
            split = split_layers(layers, [1.0] * cluster.size)
        else:
            split = split_layers(layers, shares or hosts.shares())
            # "--model=PATH": a path never reads as an option of the worker
            model, protocol = [f"--model={checkpoint.path}"], ["--protocol", str(PROTOCOL)]
            args = [[*model, "--start", str(s), "--end", str(e), *protocol] for s, e in split]
            if progress:
                progress(f"Starting {hosts.size - 1} more rank(s)")
            cluster = Cluster.start(hosts, args)
        return cls._load_rank0(checkpoint, cluster, split, progress, reply_timeout_s)

    @classmethod
    def _load_rank0(cls, checkpoint, cluster: Cluster, split, progress, reply_timeout_s=None):
        from models.distributed.stage import load_stage
        from models.inference.engine import load_tokenizer

        text = checkpoint.config["text_config"]
        try:
            if progress:
                progress("Reading weights")
            start, end = split[0]
            stage = load_stage(checkpoint.path, start, end, first=True, last=False)
            tokenizer = load_tokenizer(checkpoint)
        except BaseException:
            PipelineLM(None, cluster, 0).stop()
            raise
        lm = PipelineLM(stage, cluster, int(text["vocab_size"]), reply_timeout_s)
        if progress:
            progress("Waiting for the other ranks to read their layers")
        try:
            lm.peak_memory(watched=False)  # the watchdog then times replies, not loading
        except BaseException:
            lm.stop()
            raise
        return cls(checkpoint, stage.model, tokenizer, lm, tuple(split))

    def reset_cache(self) -> None:
        super().reset_cache()
        if self.pipeline is not None:
            self.pipeline.generation += 1

    def adopt_cache(self, snapshot: CacheSnapshot, conversation_id: int | str | None = None) -> bool:
        """Make the conversation's saved cache the cache of every rank: ``snapshot`` (rank 0's
        layers) here, each other rank's own file there. False, the cache left as it was, when
        ``snapshot`` does not fit rank 0's layers or no ``conversation_id`` names the other
        ranks' files; False, the cache reset (the next turn prefilled on every rank), when any
        other rank could not restore its share."""
        caches = fitting_caches(snapshot, self.new_cache())
        if caches is None or conversation_id is None or self.pipeline is None:
            return False
        self.pipeline.generation += 1  # what the ranks that restore now hold
        try:
            restored = self.pipeline.restore(conversation_id, snapshot, self.pipeline.generation)
        except BaseException:
            self.reset_cache()
            raise
        if not restored:
            self.reset_cache()
            return False
        self._take_cache(caches, snapshot)
        return True

    def save_rank_caches(
        self, conversation_id: int | str, snapshot: CacheSnapshot, budget_bytes: int
    ) -> None:
        """Have every other rank save its share of the cache ``snapshot`` was taken from (now,
        before the next turn changes it) as the conversation's, within ``budget_bytes``."""
        assert self.pipeline is not None, "the engine is closed"
        self.pipeline.save(conversation_id, snapshot, budget_bytes)

    def _run(self, prompt, settings: GenerationSettings, *args):
        assert self.pipeline is not None, "the engine is closed"
        self.pipeline.kv = (settings.kv_bits or 0, settings.kv_group_size)
        yield from super()._run(prompt, settings, *args)

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline = None
        super().close()
