"""Rank 0: the ``Engine`` of a model split across a cluster.

``PipelineEngine`` is the single-machine ``Engine`` (prompt, images, KV reuse across turns,
sampling, cancel, figures) with its language model swapped for ``PipelineLM``: rank 0 embeds the
tokens (and merges the image features, from the vision tower it keeps), runs its own layers,
sends the hidden states down the ring and receives the last position's logits from the last
rank. Each rank keeps the KV caches of its own layers; a header tells them how far rank 0's
caches reach, so a turn that reuses (trims) the cache trims theirs too. A rank that stops or
cannot be reached ends the answer with an error naming the host (``RankLost``), and so does one
that hangs: no reply within ``reply_timeout_s`` (``models.distributed.watchdog``); the engine then
refuses further answers with the same message, and closing it ends the other ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.distributed.hosts import HostFile
from models.distributed.launcher import Cluster
from models.distributed.watchdog import ReplyWatchdog, default_timeout_s
from models.distributed.wire import Command, Header, dtype_name, recv, send
from models.inference.engine import Engine, GenerationSettings


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
        self.failure: str | None = None

    @property
    def layers(self):
        return self.stage.layers

    def make_cache(self):
        return self.stage.make_cache()

    def _checked(self, call: Callable, watched: bool = True):
        if self.failure is not None:
            raise RankLost(self.failure)
        with ReplyWatchdog(self.cluster, self.reply_timeout_s if watched else None) as watchdog:
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
        header = Header(Command.RUN, out.shape[1], offset, dtype_name(out.dtype), *self.kv)

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

    def stop(self) -> None:
        if self.failure is None:
            try:
                send(Header(Command.STOP).to_array(), 1, self.cluster.group)
            except RuntimeError:
                pass
        self.cluster.stop()


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
            args = [["--model", str(checkpoint.path), "--start", str(s), "--end", str(e)] for s, e in split]
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

    def _run(self, prompt, settings: GenerationSettings, *args):
        assert self.pipeline is not None, "the engine is closed"
        self.pipeline.kv = (settings.kv_bits or 0, settings.kv_group_size)
        yield from super()._run(prompt, settings, *args)

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline = None
        super().close()
