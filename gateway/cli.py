"""`linegw`: the one command a user needs (run, demo, simulate, check-config, spec)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from gateway import __version__
from gateway.analytics.cli import export_app, report_app
from gateway.cancellation import where_tasks_wait
from gateway.clitools import (
    DEMO_LINE,
    Overrides,
    apply_overrides,
    console,
    err_console,
    fail,
    load_config,
    load_or_fail,
    overridden,
    parse_duration,
)
from gateway.conformance.cli import conformance
from gateway.logs import configure as configure_logging
from gateway.mapping.cli import discover, mapping_app
from interface_spec import Spec, SpecError, load_spec
from interface_spec.cli import spec_app

if TYPE_CHECKING:
    from gateway.config import LineConfig

log = logging.getLogger("linegw")

app = typer.Typer(help="linegw: a line gateway for lithium-ion cell production lines.", no_args_is_help=True)

STOP_SLOW_S = 20.0  # a stop taking longer is logged with what it waits for
HOST_OPTION = typer.Option(None, "--host", help="address the API listens on (over api.host; env LINEGW_HOST)")
PORT_OPTION = typer.Option(None, "--port", help="API port, 0 for a free one (over api.port; env LINEGW_PORT)")
STORE_OPTION = typer.Option(None, "--store", help="the embedded store's file (over store.path; env LINEGW_STORE)")


def _version(value: bool) -> None:
    if value:
        console.print(f"linegw {__version__} (line interface spec {load_spec().version})")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """linegw: a line gateway for lithium-ion cell production lines."""




@app.command("check-config")
def check_config(line_file: Path = typer.Argument(..., help="line configuration YAML"),
                 strict: bool = typer.Option(False, "--strict", help="mandatory variables a mapping leaves unmapped "
                                             "are errors, not warnings")) -> None:
    """Check a line file, the mapping files and the secrets it names; errors give file:line: field."""
    from gateway.mapping.compile import load_mapping, unmapped_mandatory

    cfg, spec = load_or_fail(line_file)
    gaps = {eq.id: (Path(eq.mapping).name, unmapped_mandatory(spec, load_mapping(eq.mapping, spec)))
            for eq in cfg.equipment if eq.mapping}
    gaps = {eid: gap for eid, gap in gaps.items() if gap[1]}
    if strict and gaps:
        fail(SpecError("\n".join(f"{eid}: {name} leaves {len(paths)} mandatory variables unmapped: {', '.join(paths)}"
                                 for eid, (name, paths) in gaps.items())))
    console.print(f"[green]OK[/green] {line_file}: line '{cfg.line}', {len(cfg.equipment)} machines")
    for eq in cfg.equipment:
        console.print(f"  {eq.id:<12} {eq.cls:<10} {eq.protocol:<7} {eq.endpoint}  "
                      f"{'mapping ' + Path(eq.mapping).name if eq.mapping else 'native profile'}")
    if cfg.forward and cfg.forward.influx:
        console.print(f"  forward to InfluxDB {cfg.forward.influx.url} bucket '{cfg.forward.influx.bucket}'")
    if cfg.forward and cfg.forward.mqtt:
        console.print(f"  forward to MQTT {cfg.forward.mqtt.host}:{cfg.forward.mqtt.port} under '{cfg.forward.mqtt.base_topic}/'")
    for eid, (name, paths) in gaps.items():
        # Not an error: a vendor machine may lack them. The integration conformance run reports each one
        # unless it is declared absent (--absent); --strict refuses the file instead.
        err_console.print(f"[yellow]warning:[/yellow] {eid}: {name} leaves {len(paths)} mandatory variables unmapped: "
                          f"{escape(', '.join(paths))}", highlight=False)


def _listen_or_fail(cfg: Any, line_file: Path, over: Overrides | None = None) -> socket.socket:
    """The API's listening socket, bound before anything starts: an address that is not this
    machine's, or a port in use, is one `file:line: field` message instead of a server's traceback."""
    from gateway.config import located
    from interface_spec.loader import yaml_node

    host, port = cfg.api.host, cfg.api.port
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        field, why = ("api", "host"), f"cannot listen on {host}: {exc.strerror}"
    else:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need not wait
            sock.bind(address)
            return sock
        except OSError as exc:
            sock.close()
            in_use = exc.errno == errno.EADDRINUSE
            field = ("api", "port") if in_use else ("api", "host")
            why = f"cannot listen on {host} port {port}: {exc.strerror}" + (
                "; is another gateway running? Choose another port with --port (or LINEGW_PORT)" if in_use else "")
    given = (over.sources() if over is not None else {}).get(field[1])
    if given:  # not the line file's value: name the option it came from, not a line of the file
        fail(SpecError(f"{given}: {why}"))
    fail(SpecError(located(line_file, yaml_node(line_file), [(field, why)])))


async def _serve_gateway(cfg: LineConfig, spec: Spec, stop: asyncio.Event, on_ready: Callable[[Any], None] | None = None,
                         sock: socket.socket | None = None, line_file: Path | None = None,
                         over: Overrides | None = None) -> None:
    """The gateway until `stop`. With `line_file`, SIGHUP and POST /api/v1/reload read it again and apply it."""
    import uvicorn

    from gateway.api.app import create_app
    from gateway.api.auth import ApiConfigError, KeyRing
    from gateway.forward.service import Forwarding
    from gateway.runtime.gctime import settle
    from gateway.runtime.line import LineRuntime
    from gateway.store.sqlite import SqliteStore

    Path(cfg.store.path).parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(cfg.store.path, retention_days=cfg.store.retention_days, max_disk_mb=cfg.store.max_disk_mb,
                        records_retention_days=cfg.store.records_retention_days.days(),
                        compress_in=cfg.store.compress_in)
    await store.start()
    runtime = LineRuntime(cfg, spec, store)
    classes: dict[str, str] = {eq.id: eq.cls for eq in cfg.equipment}  # the forwarders' tags; a reload keeps it current
    forwarding = Forwarding(store, cfg.forward, cfg.line, classes, spec, runtime)
    reload = None
    if line_file is not None:
        async def reload() -> dict[str, list[str]]:
            new, _ = await asyncio.to_thread(load_config, line_file)
            new = overridden(new, over) if over is not None else new
            ring = KeyRing(new.api)  # load_config checked the keys: built before anything changes
            result = await runtime.reload(new)
            if result["applied"]:
                api.state.keys = ring  # rotated keys: the next request is checked against the new ring
            classes.update({eq.id: eq.cls for eq in runtime.config.equipment})
            return result

        _reload_on_sighup(reload)
    try:
        api = create_app(runtime, store, spec, cfg.api, forwarding, reload)
    except ApiConfigError as exc:
        await store.close()
        fail(exc)
    settle()  # what is built by now lives as long as the process: out of the garbage collector's passes
    tls = cfg.api.tls
    server = _api_server_class()(uvicorn.Config(api, host=cfg.api.host, port=cfg.api.port, log_level="warning",
                                                lifespan="on", ws="websockets-sansio",
                                                ws_ping_interval=cfg.api.ws_keepalive_s,
                                                ws_ping_timeout=cfg.api.ws_keepalive_s,
                                                ssl_certfile=tls.cert_file if tls else None,
                                                ssl_keyfile=tls.key_file if tls else None))
    slow: asyncio.TimerHandle | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            rt = tg.create_task(runtime.run(), name="runtime")
            fwd = tg.create_task(forwarding.run(), name="forward")
            web = tg.create_task(server.serve(sockets=[sock] if sock else None), name="api")
            while not server.started:  # noqa: ASYNC110  (uvicorn offers a flag, no event, for "listening")
                await asyncio.sleep(0.05)
            if on_ready:
                on_ready(server)
            await stop.wait()
            # A stop that takes long says what it waits for (a task that lost its cancellation waits for ever).
            slow = asyncio.get_running_loop().call_later(
                STOP_SLOW_S, lambda: log.warning("stopping: still waiting after %.0f s for %s", STOP_SLOW_S,
                                                 "; ".join(where_tasks_wait())))
            server.should_exit = True
            await web
            rt.cancel()
            fwd.cancel()
    finally:
        if slow is not None:
            slow.cancel()
        await store.close()
        if sock is not None:
            sock.close()


def _reload_on_sighup(reload: Callable[[], Awaitable[dict[str, list[str]]]]) -> None:
    """SIGHUP reads the line file again; a file that does not load is logged and the running line stays."""
    from gateway.runtime.line import ReloadRefused

    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def apply() -> None:
        try:
            await reload()  # logs what it did
        except (SpecError, ReloadRefused, OSError) as exc:
            log.error("SIGHUP: the line file was not applied, the running line is unchanged:\n%s", exc)

    def on_signal() -> None:
        task = loop.create_task(apply(), name="reload")
        pending.add(task)
        task.add_done_callback(pending.discard)

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, on_signal)


def _api_server_class() -> type[Any]:
    import uvicorn

    class ApiServer(uvicorn.Server):
        """uvicorn without its own SIGINT/SIGTERM handlers: the gateway's handler stops everything in order."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return ApiServer


def _stop_event(duration: float | None) -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)
    return stop


def _api_url(cfg: Any, server: Any) -> str:
    port = cfg.api.port
    if port == 0 and server.servers:
        port = server.servers[0].sockets[0].getsockname()[1]
    return f"{'https' if cfg.api.tls else 'http'}://{cfg.api.host}:{port}"


@app.command()
def run(line_file: Path = typer.Argument(..., help="line configuration YAML"),
        log_level: str = typer.Option("info", help="debug, info, warning"),
        host: str | None = HOST_OPTION, port: int | None = PORT_OPTION, store: Path | None = STORE_OPTION,
        log_format: str = typer.Option("text", "--log-format", help="text, or json: one object per line with "
                                       "ts, level, logger, message and the machine's ID as `equipment`")) -> None:
    """Run the gateway for a line: adapters, store and API."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"'{log_format}' is not a log format: text or json", param_hint="--log-format")
    cfg, spec = load_or_fail(line_file)
    configure_logging(log_level, log_format, [eq.id for eq in cfg.equipment])
    cfg, over = apply_overrides(cfg, host, port, store)
    sock = _listen_or_fail(cfg, line_file, over)

    async def main() -> None:
        stop = _stop_event(None)
        await _serve_gateway(cfg, spec, stop,
                             lambda s: console.print(f"linegw: line '{cfg.line}' API on {_api_url(cfg, s)}/api/v1  dashboard {_api_url(cfg, s)}/"),
                             sock, line_file, over)

    asyncio.run(main())


def _sim_configs(cfg: Any) -> list[Any]:
    from gateway.endpoint import parse_endpoint
    from simulators.line import SimConfig

    out = []
    for eq in cfg.equipment:
        if eq.simulate is None:
            continue
        where = parse_endpoint(eq.endpoint)
        out.append(SimConfig(
            equipment_id=eq.id, cls=eq.cls, protocol=eq.protocol, host=where.host, port=where.port or 0,
            dialect=eq.simulate.dialect or eq.mapping or "conforming", seed=eq.simulate.seed, time_scale=eq.simulate.time_scale,
            counts=dict(eq.counts), faults=list(eq.simulate.faults),
            machine_name=eq.simulate.machine_name or eq.machine or eq.id,
            options=dict(eq.simulate.options),
        ))
    return out


async def start_simulators(cfg: Any) -> Any:
    """Start every simulated machine of a line; endpoints with port 0 get the port chosen."""
    from simulators.line import SimLine

    line = SimLine()
    await line.start(_sim_configs(cfg))
    urls = line.endpoints()
    for eq in cfg.equipment:
        if eq.id in urls:
            eq.endpoint = urls[eq.id]
    return line


def _print_endpoints(line: Any) -> None:
    for eq_id, url in line.endpoints().items():
        console.print(f"  {eq_id:<12} {url}")


@app.command()
def simulate(line_file: Path = typer.Argument(..., help="line configuration YAML with simulate: sections"),
             duration: str = typer.Option(None, "--for", help="stop by itself after this long, e.g. 30s")) -> None:
    """Start simulators for every machine of a line that has a `simulate:` section."""
    configure_logging("warning")
    cfg, _ = load_or_fail(line_file, secrets=False)  # simulators need none of the gateway's secrets

    async def main() -> None:
        stop = _stop_event(parse_duration(duration) if duration else None)
        line = await start_simulators(cfg)
        try:
            _print_endpoints(line)
            console.print("simulators running; Ctrl-C stops them")
            await stop.wait()
        finally:
            await line.stop()

    asyncio.run(main())


@app.command()
def demo(line_file: Path = typer.Option(DEMO_LINE, "--line", help="line file to simulate and serve"),
         duration: str = typer.Option(None, "--for", help="stop by itself after this long, e.g. 30s"),
         host: str | None = HOST_OPTION, port: int | None = PORT_OPTION, store: Path | None = STORE_OPTION) -> None:
    """Start the demo line's simulators and the gateway together, on the embedded store."""
    configure_logging("warning")
    cfg, spec = load_or_fail(line_file)
    cfg, over = apply_overrides(cfg, host, port, store)
    sock = _listen_or_fail(cfg, line_file, over)

    async def main() -> None:
        stop = _stop_event(parse_duration(duration) if duration else None)
        line = await start_simulators(cfg)
        try:
            console.print(f"[bold]linegw demo[/bold]: line '{cfg.line}' — simulators:")
            _print_endpoints(line)

            def ready(server: Any) -> None:
                url = _api_url(cfg, server)
                console.print(f"gateway API  {url}/api/v1  (OpenAPI docs {url}/docs)")
                console.print(f"dashboard    {url}/")
                console.print("Ctrl-C stops the demo" + (f"; stopping by itself after {duration}" if duration else ""))

            await _serve_gateway(cfg, spec, stop, ready, sock)
        finally:
            await line.stop()

    asyncio.run(main())


# Sub-commands that live with what they are about (the spec, the reports, the kit).
keys_app = typer.Typer(help="API keys for the line file's api.keys.", no_args_is_help=True)


@keys_app.command("new")
def keys_new(user: str = typer.Option(..., help="who the key is for"),
             role: str = typer.Option(..., help="viewer, operator or engineer")) -> None:
    """Make a random API key: the key for its holder, once, and the api.keys entry with only its hash.

    The line file then holds no secret; a new entry (or a changed hash) takes effect with
    `systemctl reload linegw`, SIGHUP or POST /api/v1/reload, without a restart.
    """
    import hashlib
    import secrets

    from gateway.config import ApiKey

    if role not in ("viewer", "operator", "engineer"):
        raise typer.BadParameter(f"'{role}' is not a role: viewer, operator or engineer", param_hint="--role")
    key = secrets.token_urlsafe(32)  # 256 random bits
    entry = ApiKey(user=user, role=role, key_sha256=hashlib.sha256(key.encode()).hexdigest())
    console.print(f"key (give it to {user}; it is not stored anywhere): {key}", highlight=False, soft_wrap=True)
    console.print("api.keys entry for the line file:", highlight=False)
    console.print(f"    - {{user: {entry.user}, role: {entry.role}, key_sha256: {entry.key_sha256}}}",
                  highlight=False, soft_wrap=True)


certs_app = typer.Typer(help="The OPC UA server certificates the gateway trusts (security.trust: list).",
                        no_args_is_help=True)
CERT_DIR_OPTION = typer.Option(None, "--dir", help="the certificate directory (security.certificate_dir); "
                                                   "default: the gateway's own")


def _cert_dir(given: Path | None) -> Path:
    from gateway.adapters.opcua.settings import default_certificate_dir

    return given or default_certificate_dir()


@certs_app.command("list")
def certs_list(cert_dir: Path | None = CERT_DIR_OPTION) -> None:
    """Trusted and rejected server certificates: thumbprint, endpoint first seen at, subject, expiry."""
    from gateway.adapters.opcua.security import certificates

    pki = _cert_dir(cert_dir)
    found = certificates(pki)
    if not found:
        console.print(f"no server certificates under {pki}")
        return
    # One certificate a line, never cut to the terminal's width: thumbprints are copied from here.
    for c in found:
        console.print(f"{c.status:<9} {c.thumbprint}  {c.endpoint or '-'}  {c.subject}  valid until {c.not_after}",
                      highlight=False, soft_wrap=True)


@certs_app.command("trust")
def certs_trust(thumbprint: str = typer.Argument(..., help="the thumbprint, or enough of its start to be unique"),
                cert_dir: Path | None = CERT_DIR_OPTION) -> None:
    """Trust a certificate: the machine showing it is accepted at its next connect."""
    _move_cert(thumbprint, cert_dir, "trusted")


@certs_app.command("reject")
def certs_reject(thumbprint: str = typer.Argument(..., help="the thumbprint, or enough of its start to be unique"),
                 cert_dir: Path | None = CERT_DIR_OPTION) -> None:
    """Stop trusting a certificate: a session with it is refused from its next connect."""
    _move_cert(thumbprint, cert_dir, "rejected")


def _move_cert(thumbprint: str, cert_dir: Path | None, to: str) -> None:
    from gateway.adapters.opcua.security import move

    try:
        cert = move(_cert_dir(cert_dir), thumbprint, to)
    except ValueError as exc:
        fail(exc)
    console.print(f"{to}: {cert.thumbprint} {cert.subject} ({cert.path})", highlight=False, soft_wrap=True)


app.command("discover")(discover)
app.add_typer(mapping_app, name="mapping")
app.add_typer(keys_app, name="keys")
app.add_typer(certs_app, name="certs")
app.add_typer(spec_app, name="spec", help="Validate, show and document the line interface spec.")
app.add_typer(report_app, name="report")
app.add_typer(export_app, name="export")
app.command("conformance")(conformance)


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    app()
