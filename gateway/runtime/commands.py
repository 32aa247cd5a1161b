"""Commands: interlocks first, then the machine, then read-back and audit.

A command reaches equipment only when the role allows it, the machine is
available, its control authority is Remote and the spec's PackML table allows
it in the current state. Every request, refused or not, lands in the audit log.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.adapters.base import AdapterError
from gateway.runtime.device import Device
from gateway.runtime.view import CommandResult

ROLES_ALLOWED = {"operator", "engineer"}


def _check_params(dev: Device, command: str, params: dict[str, Any]) -> str | None:
    spec = dev.spec
    cmd = spec.commands[command]
    known = {p.name for p in cmd.params}
    extra = set(params) - known
    if extra:
        return f"unknown parameter(s) {sorted(extra)} for {command} (takes {sorted(known) or 'none'})"
    for p in cmd.params:
        if p.name not in params:
            if p.required:
                return f"{command} needs parameter '{p.name}'"
            continue
        value = params[p.name]
        if p.type == "enum":
            members = spec.enum(p.enum or "")
            if value not in members and value not in members.values():
                return f"'{value}' is not a {p.enum} ({', '.join(members)})"
        elif p.type == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            return f"parameter '{p.name}' must be an integer"
        elif p.type == "string" and not isinstance(value, str):
            return f"parameter '{p.name}' must be a string"
    return None


async def execute(dev: Device, command: str, params: dict[str, Any], user: str, role: str) -> CommandResult:
    res = await _execute(dev, command, params, user, role)
    await dev.store.record_audit(time.time(), user, role, dev.eq.id, command, params, res.code, res.result, res.detail)
    return res


def _refuse(dev: Device, command: str, result: str, detail: str) -> CommandResult:
    return CommandResult(command, dev.spec.result_codes[result], result, detail, dev.state_name("packml_state"))


async def _execute(dev: Device, command: str, params: dict[str, Any], user: str, role: str) -> CommandResult:
    spec = dev.spec
    if role not in ROLES_ALLOWED:
        return _refuse(dev, command, "cannot_perform_now", f"role '{role}' may not command equipment")
    if command not in spec.commands:
        return _refuse(dev, command, "invalid_command", f"'{command}' is not a command ({', '.join(spec.commands)})")
    if not dev.view.available or dev.adapter is None:
        return _refuse(dev, command, "cannot_perform_now", f"{dev.eq.id} is unavailable: {dev.view.link_reason or 'not connected'}")
    authority = dev.state_name("control_authority")
    if authority != "Remote":
        return _refuse(dev, command, "cannot_perform_now", f"control authority is {authority}; commands need Remote")
    state = dev.state_name("packml_state")
    outcome = None
    if command in spec.core.packml.commands:
        outcome = spec.packml_command(state or "Undefined", command)
        if outcome.result not in ("ok", "accepted_completes_later"):
            return _refuse(dev, command, outcome.result, f"{command} is not allowed in state {state}")
    problem = _check_params(dev, command, params)
    if problem:
        return _refuse(dev, command, "parameter_invalid", problem)
    try:
        code = await _send(dev, command, params)
    except AdapterError as exc:
        return _refuse(dev, command, "cannot_perform_now", f"equipment did not take the command: {exc}")
    except NotImplementedError as exc:
        return _refuse(dev, command, "not_supported", str(exc))
    names = {v: k for k, v in spec.result_codes.items()}
    result = names.get(code, f"unknown_{code}")
    res = CommandResult(command, code, result, "accepted by equipment" if code in (0, 4) else f"equipment answered {result}", state)
    if command == "AcknowledgeAlarm" and code == 0:
        dev.alarms.acknowledge(int(params["alarm_code"]), time.time(), user)
    if outcome is not None and outcome.target and code in (0, 4):
        res.confirmed, res.state_after = await _confirm(dev, outcome.target, dev.eq.command_timeout_s)
        res.detail = (f"state is {outcome.target}" if res.confirmed
                      else f"accepted, but state is {res.state_after}, not {outcome.target}, after {dev.eq.command_timeout_s:g} s")
    return res


async def _confirm(dev: Device, target: str, timeout: float) -> tuple[bool, str | None]:
    """Read back: wait until the machine reports the target state."""
    try:
        async with dev.state_changed:
            async with asyncio.timeout(timeout):
                await dev.state_changed.wait_for(lambda: dev.state_name("packml_state") == target)
        return True, target
    except TimeoutError:
        return False, dev.state_name("packml_state")


async def _send(dev: Device, command: str, params: dict[str, Any]) -> int:
    """Deliver the command in the machine's own way; returns the spec result code."""
    spec, adapter, plan = dev.spec, dev.adapter, dev.plan
    assert adapter is not None and plan is not None
    cmd = spec.commands[command]
    args = [spec.enum(p.enum or "")[params[p.name]] if p.type == "enum" and isinstance(params.get(p.name), str)
            else params.get(p.name) for p in cmd.params]
    if plan.native:
        assert dev.link is not None
        code = await dev.binding.command(dev.link, spec, command, args, dev.eq.command_timeout_s)
        return code if code is not None else 0  # a method without a result: taken as ok, completion is read back
    mapped = plan.commands.get(command)
    if mapped is None:
        raise NotImplementedError(f"the mapping of {dev.eq.id} has no '{command}' command")
    # A vendor method without a result, like a command register, only says the command was taken;
    # completion is read back.
    if mapped.call is not None:
        out = await adapter.call(f"cmd:{command}", list(mapped.call.args) + [a for a in args if a is not None])
        return int(out[0]) if out and isinstance(out[0], int) else spec.result_codes["accepted_completes_later"]
    assert mapped.write is not None  # a mapped command is a call or a write (the mapping model requires one)
    await adapter.write(f"cmdw:{command}", mapped.write.value)
    return spec.result_codes["accepted_completes_later"]
