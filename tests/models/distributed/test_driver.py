"""Rank 0's side of a saved cache across ranks: adopted only when every other rank restored its
share, and every replacement of rank 0's cache changes the cache the header names.

The pipeline here is a stand-in (no ring): a one-machine model whose ``restore`` answers as told.
"""

import pytest

from models.distributed.driver import PipelineEngine
from models.inference.engine import Engine, GenerationSettings
from models.inference.prompt import ChatMessage
from tests.support.synthetic_checkpoints import TinyShape, write_checkpoint


class StandInPipeline:
    def __init__(self, engine: Engine, restores: bool):
        self._lm = engine.language_model
        self.restores = restores
        self.generation = 0
        self.asked: list = []

    def make_cache(self):
        return self._lm.make_cache()

    def restore(self, conversation_id, snapshot, generation) -> bool:
        self.asked.append((conversation_id, snapshot.tokens, generation))
        return self.restores


@pytest.fixture(scope="module")
def snapshot_and_engine(tmp_path_factory):
    model = write_checkpoint(tmp_path_factory.mktemp("driver") / "tiny", TinyShape(layers=2), seed=2)
    engine = Engine.load(model)
    settings = GenerationSettings(max_tokens=3, temperature=0.0)
    list(engine.generate([ChatMessage("user", "Hello there")], settings))
    return engine.snapshot_cache(), engine


def _pipeline_engine(engine: Engine, restores: bool) -> tuple[PipelineEngine, StandInPipeline]:
    stand_in = StandInPipeline(engine, restores)
    pipeline = PipelineEngine(engine.checkpoint, engine.model, engine.tokenizer, stand_in, ((0, 2),))  # type: ignore[arg-type]
    return pipeline, stand_in


def test_rank_0_alone_never_adopts_a_saved_cache(snapshot_and_engine):
    snapshot, engine = snapshot_and_engine
    pipeline, stand_in = _pipeline_engine(engine, restores=True)
    assert not pipeline.adopt_cache(snapshot)  # no conversation: the other ranks' files unknown
    assert stand_in.asked == [] and pipeline.cache_keys == ()


def test_adopted_when_every_rank_restored_as_the_cache_they_were_told(snapshot_and_engine):
    snapshot, engine = snapshot_and_engine
    pipeline, stand_in = _pipeline_engine(engine, restores=True)
    assert pipeline.adopt_cache(snapshot, 12)
    assert stand_in.asked == [(12, snapshot.tokens, 1)] and stand_in.generation == 1
    assert pipeline.cache_keys == snapshot.keys
    pipeline.reset_cache()
    assert stand_in.generation == 2


def test_not_adopted_and_reset_everywhere_when_a_rank_could_not_restore(snapshot_and_engine):
    snapshot, engine = snapshot_and_engine
    pipeline, stand_in = _pipeline_engine(engine, restores=False)
    assert not pipeline.adopt_cache(snapshot, 12)
    # The ranks that did restore hold cache 1; rank 0 continues neither that nor its old one.
    assert stand_in.asked == [(12, snapshot.tokens, 1)] and stand_in.generation == 2
    assert pipeline.cache_keys == ()


def test_a_restore_may_wait_longer_than_a_reply_before_a_rank_is_hung(snapshot_and_engine, monkeypatch):
    import mlx.core as mx

    import models.distributed.driver as driver

    snapshot, _engine = snapshot_and_engine
    waited: list = []

    class Watchdog:
        message = None

        def __init__(self, _cluster, timeout_s):
            waited.append(timeout_s)

        def __enter__(self):
            return self

        def __exit__(self, *_exc):
            return None

    class Cluster:
        group, size = None, 2

    monkeypatch.setattr(driver, "ReplyWatchdog", Watchdog)
    monkeypatch.setattr(driver, "send", lambda *_args: None)
    monkeypatch.setattr(driver, "recv", lambda shape, *_args: mx.ones(shape))
    lm = driver.PipelineLM(None, Cluster(), vocab=8, reply_timeout_s=30.0)
    assert lm.restore(7, snapshot, generation=1)
    lm.save(7, snapshot, budget_bytes=1 << 30)
    assert waited == [30.0 * driver.RESTORE_PATIENCE, 30.0]  # a slow disk is not a hung rank
