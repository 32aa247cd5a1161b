"""One supervisor per machine: the only owner of its adapter.

It discovers the machine's array sizes, builds the plan, runs the adapter,
turns readings into validated samples, keeps the live picture (state,
identity, alarms, availability), pumps the machine's events in order, and
executes commands. Everything else reads from it; nothing reaches past it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.adapters import adapter_factory
from gateway.adapters.base import Adapter, AdapterError, AdapterFactory, RawReading
from gateway.bindings import Binding, DiscoveryTimeout, NativeLink, binding_for, count_paths, discover_counts
from gateway.config import Equipment
from gateway.mapping.compile import Plan, Trigger, load_mapping, mapped_plan
from gateway.runtime.alarms import AlarmTracker, Occurrence
from gateway.runtime.ingest import to_samples
from gateway.runtime.view import EquipmentView, LiveMessage
from gateway.samples import Quality, Sample
from gateway.store import StoreClosed
from gateway.store.base import EventRecord, Store
from interface_spec import Spec, minor_version

log = logging.getLogger("linegw.device")

STATE_PREFIX = "state."
IDENT_PREFIX = "identification."
HEARTBEAT = "status.heartbeat"
AVAILABILITY = "status.availability"
STALLED = "heartbeat_stopped: machine not updating"  # the reason a frozen machine's values carry
RECORD_QUEUE = 10_000
LINK_DOWN = "link_down"  # the reason of the gateway's own mark of an outage, one per path
SEED_FLUSH_S = 5.0  # how long a start waits for the store to commit what an earlier run queued
DISCOVERY_TIMEOUT_S = 30.0  # how long one attempt to read a machine's array sizes waits before it is logged and repeated
EVENTS_BATCH = 100  # events read per request (OPC UA: one method call; Modbus: one mailbox read each)
SEED_WINDOWS_S = (1.0, 60.0, 3600.0, 86400.0, 30 * 86400.0, 1e10)  # see Device._last_read_before


StoredKey = tuple[float | None, Quality, Any, str]  # (source_ts, quality, value, reason) of a stored sample


def event_ids(payload: dict[str, Any]) -> list[str]:
    """IDs an event mentions, indexed for traceability lookups."""
    ids = [payload.get(k) for k in ("unit_id", "material_id", "job_id")]
    ids += list(payload.get("made_from") or [])
    return [str(i) for i in ids if i]


SPEC_VERSION = "identification.spec_version"
NOT_IN_VERSION = "not_in_spec_version"  # the reason of a value its machine's declared spec version does not have


class Device:
    def __init__(self, spec: Spec, eq: Equipment, store: Store, publish: Callable[[LiveMessage], None],
                 listening: Callable[[], bool] = lambda: True, factory: AdapterFactory | None = None):
        self.spec = spec
        # How its adapter is built: the protocol's own, or one run in an acquisition worker (runtime/workers.py).
        self._factory = factory
        self.eq = eq
        self.store = store
        self.publish = publish
        # Whether anyone takes live samples: a batch's message is thousands of lists, not built for no one.
        self.listening = listening
        self.view = EquipmentView(
            eq.id, eq.cls, eq.protocol, eq.endpoint, "native" if not eq.mapping else eq.mapping.rsplit("/", 1)[-1]
        )
        self.latest: dict[str, Sample] = {}
        self.plan: Plan | None = None
        # Keys of the plan's readings that are not (only) samples (_special), and the plan they are of.
        self._special_keys: tuple[Plan | None, set[str]] = (None, set())
        self.adapter: Adapter | None = None
        self.alarms = AlarmTracker(spec, eq.cls, self._alarm_changed)
        self.state_changed = asyncio.Condition()
        self.ready = asyncio.Event()
        self._records: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue(RECORD_QUEUE)
        self.records_dropped = 0
        self.samples_read = 0  # validated samples from the machine (for /metrics)
        self.samples_stored = 0  # of those, the ones handed to the store (new values)
        self._last_seq = 0
        self._events_wakeup = asyncio.Event()
        self.link: NativeLink | None = None  # requests to the machine's shared windows (commands, mailbox)
        self._background: set[asyncio.Task[None]] = set()  # owned: kept until done, cancelled on stop
        self._heartbeat_seen: tuple[Any, float] = (None, 0.0)  # (value, gateway time of last change)
        self._heartbeat_timeout = spec.core.heartbeat_timeout_s
        self._held = 0  # the adapter waits for the store's room: reads the gateway holds back, not a frozen machine
        # Core sub-units a minor version added, and that version: a machine declaring an earlier one has none of them.
        self._since = {su.id: su.since for su in spec.core.sub_units if su.since}
        self._not_served: dict[str, str] | None = None  # such sub-units -> why; None until the machine's version is read
        self._stall_marked: dict[str, Sample] = {}  # path -> the good sample a stall marked uncertain
        self._link_up = False
        self._mapped_seq = int(time.time() * 1000)
        self._trigger_seen: dict[str, Any] = {}  # trigger path -> last good value seen
        self._alarm_words: list[int] = []
        self.started = False  # run() was entered once: the machine's task is up (readiness)
        self.running = False  # run() is running now
        self.since: float | None = None  # when this machine's task started: a reload that leaves it alone keeps it
        self._data_fault: str | None = None  # what data_fault() said last, to log its changes once
        # path -> (source_ts, quality, value, reason) of the last two samples read and stored: a value re-read at
        # connect or restart with the same source timestamp, value and quality is not stored twice. Two, because
        # an OPC UA connect can deliver the initial read's newer sample before the subscription's queued older
        # one, and the newer one again later: a changed value, or an unchanged one the server stamped anew
        # (seen as 22 rows stored twice under load, at a reconnect after a connect during the server's first tick).
        self._stored: dict[str, tuple[StoredKey, StoredKey | None]] = {}
        self._settings = dict(eq.adapter)
        sec = eq.security
        if sec.mode != "None" or sec.username:
            self._settings.update(security_mode=sec.mode, security_policy=sec.policy, username=sec.username,
                                  trust=sec.trust)
            if sec.certificate_dir:
                self._settings["certificate_dir"] = sec.certificate_dir
            pw = sec.password()
            if pw is not None:
                self._settings["password"] = pw.get_secret_value()

    # --- lifecycle -----------------------------------------------------------
    async def run(self) -> None:
        self.started = self.running = True
        if self.since is None:
            self.since = time.time()
        try:
            await self._run()
        finally:
            self.running = False

    async def _run(self) -> None:
        if not self._stored:
            await self._seed_stored()
        factory = self._factory or adapter_factory(self.eq.protocol)
        counts = await self._discover_counts(factory)
        self.view.counts = counts
        self.plan = self._build_plan(counts)
        self.adapter = factory(self.eq.endpoint, self.plan.points, self._settings)
        self.link = NativeLink(self.adapter)
        self.ready.set()
        try:
            await self._run_tasks()
        finally:
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _run_tasks(self) -> None:
        assert self.adapter is not None and self.plan is not None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.adapter.run(self._on_readings, self._on_link), name=f"{self.eq.id}:adapter")
            tg.create_task(self._drain_records(), name=f"{self.eq.id}:records")
            tg.create_task(self._watch_heartbeat(), name=f"{self.eq.id}:heartbeat")
            if self.plan.native:
                tg.create_task(self._pump_events(), name=f"{self.eq.id}:events")

    async def _seed_stored(self) -> None:
        """What the store holds last per path, so that a restart does not store the unchanged values again.

        For a path whose last record is the gateway's own link_down mark, the value read before the
        outage is looked up: the same value re-read after it is no new sample either.
        """
        try:
            # What an earlier run queued is committed first (bounded: a store that cannot commit now
            # must not hold the machine's start); it is in latest() only once committed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SEED_FLUSH_S):
                    await self.store.flush()
            latest = await self.store.latest(self.eq.id)
        except StoreClosed as exc:
            log.warning("%s: the store's latest values are not available (%s); values re-read now are stored "
                        "again", self.eq.id, exc)
            return
        for s in latest:
            if s.path == AVAILABILITY:
                continue
            if s.reason != LINK_DOWN:
                self._stored[s.path] = ((s.source_ts, s.quality, s.value, s.reason), None)
                continue
            # The last record is the gateway's mark of an outage: what matters is the value read before it.
            row = await self._last_read_before(s.path, s.source_ts)
            if row is not None:
                self._stored[s.path] = ((row["ts"], Quality(row["quality"]), row["value"], row["reason"]), None)

    async def _last_read_before(self, path: str, t: float) -> dict[str, Any] | None:
        """The newest stored sample of `path` before `t` that is not a link_down mark, or None.

        History reads oldest first: windows growing back from `t` find the newest without reading a
        fast path's whole past (the first window with rows is a small one for a path that changes often).
        """
        for span in SEED_WINDOWS_S:
            rows = await self.store.history(self.eq.id, path, t - span, t, limit=100_000)
            reads = [r for r in rows if r.get("reason") != LINK_DOWN]
            if reads:
                result: dict[str, Any] | None = reads[-1]
                return result
        return None

    def _unseen(self, samples: list[Sample]) -> list[Sample]:
        """The samples not stored before: a new source timestamp, or a new value, quality or reason at it."""
        stored = self._stored
        out = []
        for s in samples:
            key = (s.source_ts, s.quality, s.value, s.reason)
            last = stored.get(s.path)
            if last is None:
                stored[s.path] = (key, None)
                out.append(s)
            elif key != last[0] and not (key == last[1] and key[0] != last[0][0]):
                # The one before last again is a re-delivery, unless the last has its timestamp: the same value
                # back at the same time (a quality that changed back) is news.
                stored[s.path] = (key, last[0])
                out.append(s)
        return out

    @property
    def binding(self) -> Binding:
        """The native profile of the machine's protocol (LookupError when the protocol has none)."""
        return binding_for(self.eq.protocol)

    def _build_plan(self, counts: dict[str, int], only: set[str] | None = None) -> Plan:
        if self.eq.mapping:
            return mapped_plan(self.spec, self.eq.id, load_mapping(self.eq.mapping, self.spec), counts, only)
        return self.binding.plan(self.spec, self.eq.id, self.eq.cls, self.eq.machine or self.eq.id, counts, only)

    async def _discover_counts(self, factory: AdapterFactory) -> dict[str, int]:
        """Array sizes: from the config, the mapping, or read from the machine itself."""
        wanted = count_paths(self.spec, self.eq.cls)
        counts = dict(self.eq.counts)
        mapping = load_mapping(self.eq.mapping, self.spec) if self.eq.mapping else None
        if mapping is not None:
            counts = {**mapping.counts, **counts}
        missing = {su: path for su, path in wanted.items() if su not in counts}
        if mapping is not None:
            # A size the mapping neither gives nor reads: every instance up to the spec's maximum.
            mapped = {vm.path for vm in mapping.variables}
            missing = {su: path for su, path in missing.items() if path in mapped}
        if not missing:
            return counts
        plan = self._build_plan({}, set(missing.values()))

        def link(up: bool, reason: str) -> None:
            if not up:
                self._set_available(False, reason)

        while True:  # a machine that is away is asked again until it answers: the plan needs its sizes
            try:
                found = await discover_counts(self.spec, self.eq.cls, plan, missing, factory, self.eq.endpoint,
                                              self._settings, DISCOVERY_TIMEOUT_S, give_up_on_error=False, on_link=link)
                break
            except DiscoveryTimeout as exc:
                log.info("%s: %s; asking again", self.eq.id, exc)
        counts.update(found)
        log.info("%s: discovered array sizes %s", self.eq.id, counts)
        return counts

    # --- readings --------------------------------------------------------------
    def _on_readings(self, readings: list[RawReading]) -> Awaitable[None] | None:
        plan = self.plan
        assert plan is not None
        now = time.time()
        samples = to_samples(self.eq.id, plan.targets, readings, now)
        self._special(readings, now)
        if samples and plan.native:
            samples = self._before_their_version(samples)
        if samples:
            if self._stalled(samples):
                # Re-read from a frozen machine: the same value again, not a fresh one.
                samples = [s._replace(quality=Quality.UNCERTAIN, reason=STALLED) if s.quality == Quality.GOOD else s
                           for s in samples]
            if self._accept(samples, now):
                return self._hold(self.store.room())  # the store is behind: the adapter waits before reading more
        return None

    def _before_their_version(self, samples: list[Sample]) -> list[Sample]:
        """Values of a sub-unit a later minor version added (the meter, 1.1), read from a machine that declares an
        earlier version: its registers read 0 there, which is no reading. They are kept, marked bad with the reason.
        The version is looked for until the machine has said it (at connect); after that a batch costs nothing
        unless the machine is older."""
        if self._not_served is None:
            declared = next((s.value for s in samples if s.path == SPEC_VERSION), None)
            if declared is None and SPEC_VERSION in self.latest:
                declared = self.latest[SPEC_VERSION].value
            if not isinstance(declared, str) or not minor_version(declared):
                return samples
            self._not_served = {sub: f"{NOT_IN_VERSION} {declared}" for sub, since in self._since.items()
                                if minor_version(declared) < minor_version(since)}
        if not self._not_served:
            return samples
        out = []
        for s in samples:
            reason = self._not_served.get(s.path.split(".", 1)[0])
            out.append(s._replace(quality=Quality.BAD, reason=reason) if reason and s.quality != Quality.BAD else s)
        return out

    async def _hold(self, room: Awaitable[None]) -> None:
        """The adapter held back until the store has room. The wait is the gateway's, not the machine's: its heartbeat
        is not read meanwhile, so its timeout counts from when reading resumes."""
        self._held += 1
        try:
            await room
        finally:
            self._held -= 1
            value, _ = self._heartbeat_seen
            if value is not None:
                self._heartbeat_seen = (value, time.monotonic())

    def _stalled(self, samples: Sequence[Sample] = ()) -> bool:
        """Connected but frozen: the heartbeat has not moved within the spec's timeout, nor in `samples`."""
        if self._held:
            return False
        value, seen = self._heartbeat_seen
        if value is None or time.monotonic() - seen <= self._heartbeat_timeout:
            return False
        return not any(s.path == HEARTBEAT and s.value not in (None, value) for s in samples)

    def _accept(self, samples: list[Sample], now: float) -> bool:
        """Store validated samples, update the live picture and fan them out; True when the store is behind."""
        fresh = self._unseen(samples)
        behind = self.store.write_samples(fresh) if fresh else False
        self.samples_read += len(samples)
        self.samples_stored += len(fresh)
        self.view.last_data_ts = now
        latest = self.latest
        changed_state = False
        changed_paths = []
        for s in samples:
            prev = latest.get(s.path)
            latest[s.path] = s
            if prev is None or prev.value != s.value:
                changed_paths.append((s.path, prev))
                if s.path.startswith(STATE_PREFIX):
                    changed_state = True
        if changed_paths:
            self._update_view(changed_paths)
        if changed_state:
            task = asyncio.get_running_loop().create_task(self._notify_state(), name=f"{self.eq.id}:state-notify")
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if self._link_up and self.listening():
            self._publish_samples(samples)
        return behind

    def _publish_samples(self, samples: list[Sample]) -> None:
        self.publish(
            LiveMessage(
                "samples",
                self.eq.id,
                {"samples": [[s.path, s.value, s.unit, int(s.quality), s.reason, s.source_ts, s.raw] for s in samples]},
            )
        )

    def _special(self, readings: list[RawReading], now: float) -> None:
        """Readings that are not samples: alarm words/codes, the event sequence."""
        plan = self.plan
        assert plan is not None
        alarm_update: set[int] | None = None
        of, special = self._special_keys
        if of is not plan:
            special = {"events.last_seq", *plan.alarm_sources, *plan.alarm_words}
            if plan.alarm_codes_key is not None:
                special.add(plan.alarm_codes_key)
            self._special_keys = (plan, special)
        # One set lookup per reading of a batch of thousands; the few that matter are looked at below.
        readings = [r for r in readings if r.key in special and not r.error]
        for r in readings:
            key = r.key
            if key == "events.last_seq":
                if isinstance(r.value, int) and r.value != self._last_seq:
                    self._last_seq = r.value
                    self._events_wakeup.set()
            elif plan.alarm_codes_key == key:
                alarm_update = {int(c) for c in (r.value or [])}
            elif key in plan.alarm_sources:
                for src in plan.alarm_sources[key]:
                    raw = r.value
                    active = ((int(raw) >> src.bit) & 1) == 1 if src.bit is not None else raw == src.active_value
                    current = set(self.alarms.active) if alarm_update is None else alarm_update
                    alarm_update = (current | {src.alarm_code}) if active else (current - {src.alarm_code})
        if plan.alarm_words:
            words = {r.key: r.value for r in readings if r.key in plan.alarm_words}
            if len(words) == len(plan.alarm_words):
                alarm_update = self.alarms.codes_from_words([int(words[k]) for k in plan.alarm_words])
        if alarm_update is not None:
            self.alarms.update(alarm_update, now)

    def _update_view(self, changed: list[tuple[str, Sample | None]]) -> None:
        spec, cls = self.spec, self.eq.cls
        triggers = self.plan.triggers if self.plan else {}
        before: dict[str, Any] = {}
        if triggers:
            before = {path: prev.value for path, prev in changed if prev is not None and prev.value is not None}
        moved: list[tuple[str, Any, Sample | None, float]] = []
        for path, prev in changed:
            s = self.latest[path]
            if path.startswith(IDENT_PREFIX):
                self.view.identity[path[len(IDENT_PREFIX):]] = s.value
            elif path.startswith(STATE_PREFIX) or path == "health.device_health":
                enum = spec.variable(cls, path).var.enum
                name = spec.enum_name(enum, s.value) if enum and isinstance(s.value, int) else s.value
                if path == "health.device_health":
                    self.view.health = name
                else:
                    variable = path[len(STATE_PREFIX):]
                    self.view.state[variable] = name
                    if not variable.startswith("previous_"):
                        moved.append((variable, name, prev, s.source_ts))
            elif path == HEARTBEAT:
                self._heartbeat_seen = (s.value, time.monotonic())
            if path in triggers:
                self._triggered(path, s, triggers[path], before)
        for variable, name, prev, ts in moved:  # after the loop: each message shows the whole new state
            self._state_changed(variable, name, prev, ts)

    def _state_changed(self, variable: str, name: Any, prev: Sample | None, ts: float) -> None:
        """A state variable moved: a live 'state' message, and for mapped machines a StateChanged event."""
        prev_name = None if prev is None else self._named(STATE_PREFIX + variable, prev.value)
        self.publish(LiveMessage("state", self.eq.id, {
            "variable": variable, "value": name, "previous": prev_name, "source_ts": ts,
            "state": dict(self.view.state), "available": self.view.available}))
        if self.plan is not None and not self.plan.native and prev is not None:
            self._emit_event("StateChanged", ts, {"variable": variable, "previous": prev_name, "current": name})

    def _triggered(self, path: str, s: Sample, triggers: list[Trigger], before: dict[str, Any]) -> None:
        """Events a mapping derives from a change: from one good value to another, never for the first
        value seen, and once for a change that happened while the link was down."""
        if s.quality == Quality.BAD or s.value in (None, ""):
            return
        last = self._trigger_seen.get(path)
        self._trigger_seen[path] = s.value
        if last is None or last == s.value:
            return
        for trig in triggers:
            ev = trig.event
            if ev.ignore and self._named(path, s.value) in ev.ignore:
                continue
            payload = self._fill(ev.payload, trig, before)
            for key, table in ev.map.items():
                if str(payload.get(key)) in table:
                    payload[key] = table[str(payload[key])]
            self._emit_event(ev.type, s.source_ts, {k: v for k, v in payload.items() if v is not None})

    def _named(self, path: str, value: Any) -> Any:
        """A value as a payload shows it: enum members by name."""
        var = self.spec.variable(self.eq.cls, path).var
        if var.enum and isinstance(value, int):
            return self.spec.enum_name(var.enum, value)
        return value

    def _fill(self, template: Any, trig: Trigger, before: dict[str, Any]) -> Any:
        """Replace "$<path>" in a trigger payload with its value now, "$before:<path>" with its value
        before this change ("[*]" is the trigger's instance)."""
        if isinstance(template, str) and template.startswith("$"):
            ref = template[1:]
            path = trig.path(ref.removeprefix("before:"))
            if ref.startswith("before:") and path in before:
                return self._named(path, before[path])
            s = self.latest.get(path)
            return None if s is None or s.value is None else self._named(path, s.value)
        if isinstance(template, list):
            return [v for v in (self._fill(t, trig, before) for t in template) if v not in (None, "")]
        if isinstance(template, dict):  # a value the machine has not shown yet is left out, as natively
            return {k: v for k, v in ((k, self._fill(t, trig, before)) for k, t in template.items()) if v is not None}
        return template

    def _emit_event(self, event_type: str, ts: float, payload: dict[str, Any]) -> None:
        """An event the gateway derives for equipment that cannot send its own."""
        self._mapped_seq += 1
        self._record("event", (self.eq.id, event_type, ts, self._mapped_seq, payload, event_ids(payload)))

    async def _notify_state(self) -> None:
        async with self.state_changed:
            self.state_changed.notify_all()

    # --- link and availability ---------------------------------------------------
    def _on_link(self, up: bool, reason: str) -> None:
        self._link_up = up
        self._set_available(up, reason)
        if up and self.plan is not None and self.plan.nameplate:
            # Identification the machine does not serve, from its mapping: as good as the link.
            now = time.time()
            self._accept([Sample(self.eq.id, path, value, self.spec.variable(self.eq.cls, path).var.unit, now, now,
                                 Quality.GOOD, "from_mapping") for path, value in self.plan.nameplate.items()], now)
        if not up:
            # A heartbeat is judged afresh on the new connection, and the spec version the machine declares.
            self._heartbeat_seen, self._stall_marked, self._not_served = (None, 0.0), {}, None
            # The gap is recorded as such: every value goes BAD "link_down" once.
            now = time.time()
            marks = [
                Sample(self.eq.id, p, None, s.unit, now, now, Quality.BAD, LINK_DOWN)
                for p, s in self.latest.items() if s.quality != Quality.BAD or s.reason != LINK_DOWN
            ]
            for m in marks:
                self.latest[m.path] = m
            if marks:
                self.store.write_samples(marks)

    def _set_available(self, up: bool, reason: str) -> None:
        if self.view.available == up and self.view.link_reason == reason:
            return
        self.view.available = up
        self.view.link_reason = reason
        now = time.time()
        code = self.spec.enum("availability")["AVAILABLE" if up else "UNAVAILABLE"]
        sample = Sample(self.eq.id, "status.availability", code, "1", now, now, Quality.GOOD, reason)
        self.latest[sample.path] = sample
        self.store.write_samples([sample])
        self._record("link", (self.eq.id, now, up, reason))
        self.publish(LiveMessage("link", self.eq.id, {"available": up, "reason": reason, "ts": now}))
        log.log(logging.INFO if up else logging.WARNING, "%s: %s %s", self.eq.id,
                "available" if up else "UNAVAILABLE", reason)

    def data_fault(self) -> str | None:
        """Why the machine's data is unusable although its link is up (every value it reads BAD), or None.

        Such a machine records nothing of use: /health counts it as a fault with this reason.
        """
        if not self.view.available:
            return None
        reasons: collections.Counter[str] = collections.Counter()
        for path, s in self.latest.items():
            if path == AVAILABILITY or s.reason in ("from_mapping", LINK_DOWN):  # the gateway's own, not read
                continue
            if s.quality != Quality.BAD:
                return None
            reasons[s.reason or "bad"] += 1
        if not reasons:
            return None
        reason, _ = reasons.most_common(1)[0]
        return f"every value read is BAD ({sum(reasons.values())} paths), e.g. {reason}"

    def _log_data_fault(self) -> None:
        """One line as every value turns BAD, one as good values come back."""
        fault = self.data_fault()
        if (fault is None) == (self._data_fault is None):
            self._data_fault = fault
            return
        if fault:
            log.warning("%s: connected but %s", self.eq.id, fault)
        else:
            log.info("%s: good values again (was: %s)", self.eq.id, self._data_fault)
        self._data_fault = fault

    async def _watch_heartbeat(self) -> None:
        """Connected but frozen: no heartbeat change within the spec's timeout means unavailable, and
        the values it last showed uncertain until the heartbeat moves again. Also says once when every
        value read turns BAD, and once when that ends."""
        timeout = self._heartbeat_timeout
        while True:
            await asyncio.sleep(timeout / 4)
            self._log_data_fault()
            if self._heartbeat_seen[0] is None or not self._link_up:
                continue
            stale = self._stalled()
            if stale and self.view.available:
                self._set_available(False, f"heartbeat_stopped: no change for {timeout:g} s")
                self._mark_stalled()
            elif not stale and not self.view.available:
                self._set_available(True, "")
                self._unmark_stalled()

    def _mark_stalled(self) -> None:
        """What the live picture shows of a frozen machine: its last values, uncertain (for the history,
        the availability record and every re-read, which the readings path marks the same way)."""
        marks = []
        for path, s in self.latest.items():
            if s.quality == Quality.GOOD and path != AVAILABILITY:
                self._stall_marked[path] = s
                marks.append(s._replace(quality=Quality.UNCERTAIN, reason=STALLED))
        for m in marks:
            self.latest[m.path] = m
        if marks:
            self._publish_samples(marks)

    def _unmark_stalled(self) -> None:
        """The heartbeat moves again: a value the machine has not changed since is as good as before
        (OPC UA sends no change for it; a Modbus scan reads it anew anyway)."""
        marked, self._stall_marked = self._stall_marked, {}
        back = [good for path, good in marked.items()
                if (s := self.latest.get(path)) is not None and s.reason == STALLED and s.value == good.value]
        for s in back:
            self.latest[s.path] = s
        if back:
            self._publish_samples(back)

    # --- alarms ------------------------------------------------------------------
    def _alarm_changed(self, state: str, occ: Occurrence, ts: float, by: str | None) -> None:
        self.view.active_alarms = [o.as_dict() for o in self.alarms.active.values()]
        self._record("alarm", (self.eq.id, occ.occurrence_id, occ.code, occ.text, occ.severity, state, ts, occ.stop_reason, by))
        self.publish(LiveMessage("alarm", self.eq.id, {"state": state, **occ.as_dict(), "ts": ts}))
        if not self.plan or not self.plan.native:
            kind = {"raised": "AlarmRaised", "cleared": "AlarmCleared", "acknowledged": "AlarmAcknowledged"}[state]
            self._emit_event(kind, ts, {"alarm_code": occ.code, "occurrence_id": occ.occurrence_id})

    # --- records: store writes that happen off the hot path -------------------------
    def _record(self, kind: str, args: tuple[Any, ...]) -> None:
        try:
            self._records.put_nowait((kind, args))
        except asyncio.QueueFull:
            self.records_dropped += 1
            log.error("%s: record queue full, dropped a %s record (%d so far)", self.eq.id, kind, self.records_dropped)

    async def _drain_records(self) -> None:
        while True:
            kind, args = await self._records.get()
            if kind == "alarm":
                eq, occ_id, code, text, sev, state, ts, stop, by = args
                await self.store.record_alarm(eq, occ_id, code, text, sev, state, ts, stop, by)
            elif kind == "event":
                eq, etype, ts, seq, payload, ids = args
                await self.store.record_event(eq, etype, ts, seq, payload, ids=ids)
                self.publish(LiveMessage("event", eq, {"type": etype, "source_ts": ts, "seq": seq, "payload": payload}))
            elif kind == "link":
                await self.store.record_link(*args)

    # --- native events -----------------------------------------------------------------
    async def _pump_events(self) -> None:
        """Fetch the machine's events in sequence order; the cursor survives restarts and outages."""
        cursor_name = f"events:{self.eq.id}"
        cursor = await self.store.get_cursor(cursor_name) or 0
        while True:
            await self._events_wakeup.wait()
            self._events_wakeup.clear()
            while cursor < self._last_seq and self._link_up:
                try:
                    envelopes = await self._read_events(cursor + 1)
                except AdapterError as exc:
                    log.warning("%s: reading events after %d failed: %s", self.eq.id, cursor, exc)
                    await asyncio.sleep(1.0)
                    continue
                if not envelopes:
                    # Gone from the machine's ring: skip to the oldest it can still hold.
                    cursor = max(cursor + 1, self._last_seq - 999)
                    continue
                batch: list[EventRecord] = []
                for env in envelopes:
                    payload = env.get("payload") or {}
                    ts = float(env.get("source_ts") or time.time())
                    batch.append((env["type"], ts, int(env["seq"]), payload, event_ids(payload)))
                await self.store.record_events(self.eq.id, batch)  # one commit for the batch read
                for event_type, ts, seq, payload, _ in batch:
                    self.publish(LiveMessage("event", self.eq.id, {"type": event_type, "source_ts": ts, "seq": seq,
                                                                   "payload": payload}))
                    # One at a time, the loop turning between them: a batch at once would overflow the queue of a
                    # live client that reads as fast as it is sent (100 events against a queue of 20).
                    await asyncio.sleep(0)
                cursor = batch[-1][2]
                await self.store.set_cursor(cursor_name, cursor)

    async def _read_events(self, first: int) -> list[dict[str, Any]]:
        assert self.link is not None
        count = max(1, min(EVENTS_BATCH, self._last_seq - first + 1))
        envelopes = await self.binding.read_events(self.link, self.spec, first, count)
        out = []
        for i, env in enumerate(envelopes):
            if not isinstance(env.get("seq"), int) or "type" not in env:
                # Kept, not dropped: what the machine sent is evidence of its fault.
                log.warning("%s: event %d is not a valid envelope: %r", self.eq.id, first + i, env)
                env = {"type": "invalid_envelope", "seq": first + i, "source_ts": time.time(), "payload": {"invalid_envelope": env}}
            out.append(env)
        return out

    def record_queue(self) -> int:
        """Alarm and event records waiting for the store."""
        return self._records.qsize()

    # --- helpers for commands ---------------------------------------------------------------
    def state_name(self, variable: str) -> str | None:
        return self.view.state.get(variable)

