"""Line intelligence computed from what the gateway stored: equipment time, OEE, the cell's record.

Everything here reads through the `Store` protocol only (`history`, `alarms`,
`events`, `events_referencing`, `link_history`, `series`), so it works for any
past range and for any store, and never holds state of its own:

* `timeline` — piecewise-constant timelines of state variables and counter
  increments, read bucket-first so a day costs a few queries, not a day of rows.
* `oee` — time per SEMI E10 state, the ISO 22400-2 KPIs (availability,
  effectiveness, quality ratio, OEE), SEMI E10 MTBF/MTTR, a stop-reason Pareto,
  per machine, per stage, per line and per shift, and the line's bottleneck.
* `shifts` — the shift calendar of the line file (`shifts:`), as time intervals.
* `record` — a unit's manufacturing record (genealogy plus the process values,
  alarms and state changes of each stage during that unit's production window)
  and the reverse recall query (a lot or roll to every cell made from it).
"""
