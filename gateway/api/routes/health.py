"""GET /health: whether the gateway is recording, as a contract a load balancer or a probe can act on.

The status derives from the real state, never from the process merely running:

* ``ok`` — every machine delivers good data, the store commits, every sink delivers.
* ``degraded`` (HTTP 200) — something is wrong but data is being recorded: a machine unavailable or
  reading nothing but BAD values, a forwarding sink failing or behind, the store slow, dropping, or
  failing its commits for less than COMMIT_GRACE_S.
* ``failing`` (HTTP 503) — nothing is being stored: store commits failing for COMMIT_GRACE_S or
  more (the samples are held in memory up to the store's bound meanwhile), the store stopped, or no
  machine delivering.

Each reason is one entry of ``problems``, worst first.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from fastapi import APIRouter, Response

from gateway.api.deps import ForwardStatus, Store, View
from gateway.api.models import HealthOut, HealthProblem

router = APIRouter(tags=["health"])

COMMIT_GRACE_S = 5.0  # commits failing this long mean nothing is being stored; shorter is a hiccup
STALLED_COMMIT_S = 30.0  # samples waiting and no commit, failed or not, for this long: the writer is stuck
HELD_WARN = 0.5  # held samples past this share of the store's bound: the store is falling behind


async def _resolved(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def store_problems(st: dict[str, Any] | None, now: float) -> list[HealthProblem]:
    """What is wrong with the store, from its stats(): commits, held samples against the bound, drops."""
    if not st:
        return []

    def problem(status: str, reason: str) -> HealthProblem:
        return HealthProblem(component="store", status=status, reason=reason)

    out = []
    held, bound = st.get("held", st.get("queued", 0)) or 0, st.get("max_queue")
    if st.get("running") is False:
        out.append(problem("failing", f"the store is not running ({st.get('last_error') or 'stopped'}); "
                                      "nothing is being stored"))
    failures = st.get("commit_failures") or 0
    if failures:
        age = now - (st.get("failing_since") or now)
        out.append(problem(
            "failing" if age >= COMMIT_GRACE_S else "degraded",
            f"store commits failing for {age:.0f} s ({failures} attempts: {st.get('last_error')}); {held} samples "
            f"held in memory of {bound}, caught up when the fault clears"))
    elif held and st.get("last_commit_ts") and now - st["last_commit_ts"] >= STALLED_COMMIT_S:
        out.append(problem("failing", f"no store commit for {now - st['last_commit_ts']:.0f} s with {held} "
                                      "samples waiting"))
    if bound and held > bound * HELD_WARN and not failures:
        out.append(problem("degraded", f"the store holds {held} samples of its bound {bound}: the disk is too slow"))
    if st.get("dropped"):
        out.append(problem("degraded", f"the store dropped {st['dropped']} samples (its queue was full)"))
    if str(st.get("compactor", "")).startswith("failed"):
        out.append(problem("degraded", f"the store's compactor {st['compactor']}"))
    return out


def equipment_problems(equipment: dict[str, dict[str, Any]]) -> list[HealthProblem]:
    """Each machine unavailable or reading only BAD values; failing when none delivers at all."""
    out = []
    delivering = 0
    for eq_id, e in equipment.items():
        if not e["available"]:
            out.append(HealthProblem(component="equipment", id=eq_id, status="degraded",
                                     reason=f"{eq_id} unavailable: {e.get('reason') or 'not connected yet'}"))
        elif e.get("data_fault"):
            out.append(HealthProblem(component="equipment", id=eq_id, status="degraded",
                                     reason=f"{eq_id}: {e['data_fault']}"))
        else:
            delivering += 1
    if equipment and not delivering:
        out.insert(0, HealthProblem(
            component="equipment", status="failing",
            reason=f"no machine delivers data (of {len(equipment)}): nothing is being recorded"))
    return out


def forward_problems(forward: dict[str, Any]) -> list[HealthProblem]:
    return [HealthProblem(component="forward", id=name, status="degraded", reason=reason)
            for name, sink in forward.items() for reason in sink.get("problems") or ()]


@router.get("/health", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "failing: nothing is being stored"}},
            summary="ok, degraded (200) or failing (503), with the problems behind it: the store's commits and "
                    "held samples, each machine's link and data quality, each forwarding sink")
async def get_health(view: View, store: Store, forward: ForwardStatus, response: Response) -> HealthOut:
    runtime = dict(view.health())
    # Whether the store's stats() is sync or async, both the runtime's copy and ours end up as plain data.
    runtime_store = runtime.pop("store", None)
    store_stats = await _resolved(store.stats()) if hasattr(store, "stats") else await _resolved(runtime_store)
    if inspect.iscoroutine(runtime_store):
        runtime_store.close()
    now = time.time()
    if isinstance(store_stats, dict) and store_stats.get("last_commit_ts"):
        store_stats = {**store_stats, "last_commit_age_s": round(now - store_stats["last_commit_ts"], 3)}
    equipment = {}
    for eq in view.equipment():
        equipment[eq.id] = {"class": eq.cls, "available": eq.available, "reason": eq.link_reason,
                            "last_data_ts": eq.last_data_ts,
                            **{k: v for k, v in (runtime.get("equipment") or {}).get(eq.id, {}).items()
                               if k not in ("available", "reason", "last_data_ts")}}
    up = sum(1 for e in equipment.values() if e["available"])
    problems = store_problems(store_stats if isinstance(store_stats, dict) else None, now)
    problems += equipment_problems(equipment) + forward_problems(forward)
    problems.sort(key=lambda p: p.status != "failing")  # stable: failing first, each group in its order
    status = "failing" if problems and problems[0].status == "failing" else "degraded" if problems else "ok"
    if status == "failing":
        response.status_code = 503
    return HealthOut(status=status, problems=problems, line=view.line_id, available=up,
                     unavailable=len(equipment) - up, equipment=equipment,
                     runtime={k: v for k, v in runtime.items() if k != "equipment"}, store=store_stats,
                     forward=forward)
