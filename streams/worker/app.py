"""The Faust app: agents over flows.v1 micro-batches (a thousandth of the raw message rate).

Over 400 lines, for now: ``build_app`` wires the agents, tables and timers in one closure
that is yet to be cut into named, separately tested functions.

Faust costs ~160 µs per message, so it never sees raw records: the ingest service hands it
micro-batches of up to ``ingest.micro_batch_records`` records, already partitioned by link,
and watermark ticks. When more micro-batches of a partition wait in the agent's buffer, they
are analysed together (up to ``analysis.merge_records`` records: a batch of 250 records cost
25 µs a record, one of 10,000 7 µs), so the agent catches up faster the further it falls
behind. Each partition's open windows live in the changelogged table ``link-windows``
together with the flows.v1 offset they include, written after every batch analysed.
A worker that takes a partition over restores that state and skips the events it already
includes, so the windows count each micro-batch once even when Faust re-delivers events it
had not committed (it does not always commit on shutdown), and ``Continuity`` re-reads the
events Faust drops around a rebalance (see there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import msgspec
import orjson
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from detectors.flows import FlowBatch
from streams.codecs.wire import TICK_KEY, WireError, decode_batch, decode_tick
from streams.config import Config
from streams.internals import queued_events, set_fetch_wait
from streams.kafka import STATE_MESSAGE_BYTES, read_compacted, read_latest
from streams.links.analysis import Analyzer
from streams.links.classification import Classification, FeedbackDecoder
from streams.links.state import LinkStates
from streams.worker.continuity import Continuity
from streams.worker.metrics import IngestMetrics

log = logging.getLogger(__name__)

# How long a partition's leaving waits for the broker to have its links' detector state
STATE_DELIVERY_SECONDS = 10.0


class _Checkpoint(msgspec.Struct, array_like=True):
    """A partition's window state and the last flows.v1 offset it includes."""

    offset: int
    windows: bytes


_CHECKPOINT = msgspec.msgpack.Decoder(_Checkpoint)


def _key(partition: int) -> bytes:
    return b"p%d" % partition


def _restore(analyzer: Analyzer, partition: int, saved: bytes | None) -> int:
    """Load a partition's checkpoint into the analyzer; return the offset it includes."""
    if not saved:
        return -1
    try:
        cp = _CHECKPOINT.decode(saved)
        analyzer.restore(partition, cp.windows)
    except (ValueError, msgspec.DecodeError) as exc:
        log.error("partition %d: unreadable checkpoint (%s); starting fresh", partition, exc)
        analyzer.revoke(partition)
        return -1
    log.info("partition %d: window state restored up to flows.v1 offset %d", partition, cp.offset)
    return cp.offset


async def _flush(
    pending: list[tuple[str, dict[str, Any]]], outputs: dict[str, Any], metrics: IngestMetrics
) -> None:
    """Send what the analysis produced. A record that cannot be serialised (a bug) is logged,
    counted and dropped: it must not stop the agent or come back on every restart."""
    records, pending[:] = list(pending), []
    for kind, record in records:
        key = str(record.get("link") or record.get("fingerprint") or "").encode()
        try:
            value = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            metrics.analysis_errors.inc()
            log.exception("dropping an unserialisable %s record", kind)
            continue
        await outputs[kind].send(key=key, value=value)


def _when_delivered(
    fut: Any, written: Callable[[], None], failed: Callable[[BaseException], None]
) -> None:
    """Call ``written`` once the broker has acknowledged the message of Faust's send future
    ``fut``, or ``failed`` with the reason it was refused or lost."""

    def done(f: asyncio.Future[Any]) -> None:
        exc = asyncio.CancelledError() if f.cancelled() else f.exception()
        if exc is None:
            written()
        else:
            failed(exc)

    fut.add_done_callback(done)


async def _save_model(classification: Classification, topic: Any, app_id: str) -> None:
    """Send the model's checkpoint; it is counted as written when the broker has it."""
    counted = classification.metrics.checkpoints

    def failed(exc: BaseException) -> None:  # the next checkpoint retries
        counted.labels("failed").inc()
        log.error("the classifier checkpoint was not written: %r", exc)

    try:
        if classification.cfg.checkpoint == "disk":
            await classification.snapshot(to_disk=True)
        else:
            data = await classification.snapshot()
            assert data is not None
            fut = await topic.send(key=app_id.encode(), value=data)
            _when_delivered(fut, counted.labels("written").inc, failed)
    except Exception:  # a failed save must not stop the analysis; the next one retries
        counted.labels("failed").inc()
        log.exception("saving the classifier checkpoint failed")


async def _resume_links(cfg: Config, states: LinkStates, partitions: list[int]) -> None:
    """Read the saved detector state of flows.v1 partitions' links (the same partitions of the
    link state topic), in one read."""
    try:
        saved = await read_compacted(cfg, cfg.linkstate.topic, partitions=partitions)
    except Exception:  # the links start their detectors afresh rather than stop the worker
        states.metrics.checkpoints.labels("unreadable").inc()
        log.exception("partitions %s: could not read the link state", partitions)
        return
    states.load(saved)
    if saved:
        log.info("partitions %s: detector state of %d links read", partitions, len(saved))


async def _save_links(states: LinkStates, topic: Any, only: int | None = None) -> None:
    """Send the changed links' detector state; each is counted as written when the broker has
    it, and a link whose record is refused or lost is sent again at the next checkpoint.
    The state of one partition (``only``: it is leaving) is awaited until the broker has it,
    for the next owner reads it from there."""
    sent = []
    for partition, link, state in states.checkpoints(only):
        name = link.decode()

        def failed(exc: BaseException, name: str = name) -> None:
            states.failed(name)
            log.error("the detector state of link %s was not written: %r", name, exc)

        try:
            fut = await topic.send(key=link, value=state, partition=partition)
            _when_delivered(fut, states.metrics.checkpoints.labels("written").inc, failed)
            sent.append(fut)
        except Exception:  # the next checkpoint retries; the analysis goes on
            states.failed(name)
            log.exception("saving the detector state of link %s failed", name)
    if only is not None and sent:  # failures are counted and logged by their callbacks
        await asyncio.wait(sent, timeout=STATE_DELIVERY_SECONDS)


def _waiting(queue: Any, partition: int) -> bool:
    """Whether the agent's buffer (an asyncio queue of Faust events) holds another event of
    ``partition``. A queue that cannot be looked into holds none: every event is then
    analysed on its own, as Faust delivers it."""
    try:
        return any(e.message.partition == partition for e in queued_events(queue))
    except (AttributeError, TypeError):
        return False


def _analyse(
    analyzer: Analyzer,
    metrics: IngestMetrics,
    partition: int,
    offset: int,
    group: list[FlowBatch] | None,
    tick: float | None,
) -> None:
    """Analyse a partition's held micro-batches as one batch (up to flows.v1 ``offset``),
    then its watermark tick if the event was one. A bug must not stop the agent or be lost in
    a restart loop: it is logged and counted, and the state goes on."""
    try:
        if group:
            batch = FlowBatch.concat(group)
            analyzer.process(batch, partition)
            metrics.analysed.inc(len(batch))
            metrics.analysis_batches.inc()
        if tick is not None:
            analyzer.advance(partition, tick)
    except Exception:
        metrics.analysis_errors.inc()
        log.exception(
            "analysis failed on flows.v1 %d@%d (%d micro-batches up to it); their records "
            "are not in the windows",
            partition,
            offset,
            len(group or ()),
        )


def _fetch_wait(app: faust.App, ms: int) -> None:
    """Give the analysis stage's aiokafka consumer a fetch wait of ``ms`` milliseconds (Faust
    fixes it at 1,500). aiokafka keeps one fetch in flight per broker, for the partitions that
    have no records buffered; when every flows.v1 partition had some, that fetch covered only
    partitions without traffic (the table's changelog), and the broker held it for the whole
    wait while new micro-batches queued behind it: a steady 1.5-s lag (docs/design.md)."""

    class Thread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            set_fetch_wait(consumer, ms)
            return consumer

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return Thread(self, loop=self.loop, beacon=self.beacon)

    # this app's transport only (a class attribute of Faust's, set on the instance)
    app.transport.Consumer = Consumer  # type: ignore[misc]


class WindowsTable(faust.Table[bytes, bytes | None]):
    """Faust's table, except that a changelog topic listed with no partitions counts as not
    known yet. Faust checks the changelog's partitions against the source topic's once, at the
    first write; when the worker's consumer had just learned of the changelog topic while it
    was being created (0 partitions), Faust raised PartitionsMismatch on every write and the
    analysis agent never analysed a record (seen once, in a test run of two lanes). Checked
    again at the next write instead, as Faust does when it does not know the topic at all."""

    def _verify_source_topic_partitions(self, source_topic: str) -> None:
        if not self.app.consumer.topic_partitions(self.changelog_topic_name):
            return  # None (unknown) or 0 (being created)
        super()._verify_source_topic_partitions(source_topic)


def build_app(
    cfg: Config, metrics: IngestMetrics, analyzer: Analyzer, replicas: int = 1
) -> faust.App:
    """The Faust app of the analysis stage; its own topics (the windows' changelog) get
    ``replicas`` replicas, as the worker's other topics on this cluster."""
    k = cfg.kafka
    state_dir = Path(cfg.worker.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        k.app_id,
        broker=f"kafka://{k.broker}",
        datadir=str(state_dir),
        store="memory://",
        web_enabled=False,
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_partitions=k.flows_partitions,
        topic_replication_factor=replicas,
        # its producer also writes the classifier's checkpoints (about 14 MB): the topics
        # limit what they take (the state topics STATE_MESSAGE_BYTES, the others the broker's)
        producer_max_request_size=max(k.max_message_bytes, STATE_MESSAGE_BYTES),
        consumer_max_fetch_size=k.max_message_bytes,
        broker_session_timeout=k.session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, k.session_timeout_seconds / 5),
        stream_wait_empty=False,
        broker_max_poll_records=k.analysis_poll_messages,  # see docs/design.md (Faust traps)
        loghandlers=[],
    )
    _fetch_wait(app, k.analysis_fetch_wait_ms)
    flows = app.topic(k.topics.flows, value_serializer="raw", key_serializer="raw")
    outputs = {
        "toptalkers": app.topic(cfg.analysis.toptalkers_topic, value_serializer="raw"),
        "series": app.topic(cfg.analysis.series_topic, value_serializer="raw"),
        "alerts": app.topic(k.topics.alerts, value_serializer="raw"),
    }
    model_topic = app.topic(cfg.classify.checkpoint_topic, value_serializer="raw")
    classification = analyzer.classification
    states = analyzer.states
    state_topic = app.topic(cfg.linkstate.topic, value_serializer="raw", key_serializer="raw")
    windows: WindowsTable = app.tables.add(WindowsTable(  # type: ignore[assignment]
        app,
        name="link-windows",
        default=None,
        beacon=app.tables.beacon,
        partitions=k.flows_partitions,
        key_type=bytes,  # bytes types make Faust use the "raw" codec; the default is JSON,
        value_type=bytes,  # and a changelog it cannot decode stalls recovery forever
    ))  # fmt: skip

    async def earliest(partition: int) -> int:
        tp = TP(k.topics.flows, partition)
        return (await app.consumer.earliest_offsets(tp)).get(tp, 0)

    async def seek(partition: int, offset: int) -> None:
        await app.consumer.seek(TP(k.topics.flows, partition), offset)

    counters = {"replayed": metrics.replayed, "reread": metrics.reread, "expired": metrics.expired}
    continuity = Continuity(earliest, seek, lambda kind, n: counters[kind].inc(n))
    pending: list[tuple[str, dict[str, Any]]] = []
    analyzer.publish = lambda kind, record: pending.append((kind, record))

    model_ready = asyncio.Event()

    @app.task  # type: ignore[untyped-decorator]
    async def resume_model() -> None:
        """Load the classifier's last checkpoint before the first batch is analysed."""
        try:
            if classification is None:
                return  # nothing to wait for
            restored = False
            if cfg.classify.checkpoint == "disk":
                restored = classification.restore_from_disk()
            elif cfg.classify.checkpoint == "kafka":
                topic = cfg.classify.checkpoint_topic
                data = await read_latest(cfg, topic, k.app_id.encode())
                restored = classification.restore(data, topic)
            if not restored:  # seconds of learning: in a thread, the event loop goes on
                await asyncio.to_thread(classification.bootstrap)
        except Exception:  # the worker runs without its old model rather than not at all
            log.exception("could not read the classifier checkpoint; starting fresh")
        finally:  # ready with the model, a fresh one, or none
            model_ready.set()
            metrics.ready.set(1)

    held: dict[int, list[FlowBatch]] = {}  # per partition: admitted, not yet analysed
    merge = cfg.analysis.merge_records

    async def take_over(first: int) -> None:
        """Restore every newly assigned flows.v1 partition at once, at the first event of one
        of them: the windows from the table (recovered before agents start), the links'
        detector state in one read of the link state topic (a read per partition stalled the
        agent about 2 s when it took 8 partitions over)."""
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == k.topics.flows}
        fresh = sorted({first} | {p for p in assigned if not continuity.knows(p)})
        for p in fresh:
            held.pop(p, None)
            continuity.restore(p, _restore(analyzer, p, windows.get(_key(p))))
        if states is not None:
            await _resume_links(cfg, states, fresh)

    background: set[asyncio.Task[None]] = set()  # model checkpoints being taken

    @app.agent(flows)
    async def analyse(stream: Any) -> None:
        await model_ready.wait()
        queue = stream.channel.queue
        async for event in stream.events():
            partition, offset = event.message.partition, event.message.offset
            metrics.queued.observe(max(time.time() - event.message.timestamp, 0.0))
            if not continuity.knows(partition):
                await take_over(partition)
            if not await continuity.admit(partition, offset):
                continue  # already in the state, or waiting for a re-read of what is missing
            tick = None
            try:
                if event.key == TICK_KEY:
                    tick = decode_tick(event.value)
                else:
                    held.setdefault(partition, []).append(decode_batch(event.value))
            except WireError as exc:
                metrics.wire_errors.inc()
                log.warning("skipping an unreadable flows.v1 message: %s", exc)
            continuity.applied(partition, offset)  # admitted: the next one is due
            group = held.get(partition)
            more = tick is None and group and sum(map(len, group)) < merge
            if more and _waiting(queue, partition):
                continue  # more of this partition is queued: analysed together
            held.pop(partition, None)
            _analyse(analyzer, metrics, partition, offset, group, tick)
            checkpoint = _Checkpoint(offset, analyzer.checkpoint(partition))
            windows[_key(partition)] = msgspec.msgpack.encode(checkpoint)  # during its event
            await _flush(pending, outputs, metrics)
            if classification is not None and classification.claim_checkpoint():
                # pickled in a thread while the analysis goes on (Classification.snapshot)
                saving = asyncio.create_task(_save_model(classification, model_topic, k.app_id))
                background.add(saving)
                saving.add_done_callback(background.discard)
            if states is not None and states.checkpoint_due():
                await _save_links(states, state_topic)

    if classification is not None:
        feedback = app.topic(cfg.classify.feedback_topic, value_serializer="raw")

        @app.agent(feedback)
        async def learn_feedback(stream: Any) -> None:
            await model_ready.wait()  # the bootstrap learns in a thread: not two learners
            decoder = FeedbackDecoder(classification.metrics)
            async for values in stream.take(500, within=1.0):
                batch, labels = decoder.decode(values)
                await classification.still.wait()  # ground truth waits out a checkpoint
                if len(batch):
                    classification.feedback(batch, labels)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        for tp in revoked:
            if tp.topic == k.topics.flows:
                if states is not None:  # the next owner resumes from the latest state
                    await _save_links(states, state_topic, only=tp.partition)
                analyzer.revoke(tp.partition)
                continuity.forget(tp.partition)
                held.pop(tp.partition, None)  # re-read by the next owner from the checkpoint

    app.on_partitions_revoked.connect(on_revoked)
    return app
