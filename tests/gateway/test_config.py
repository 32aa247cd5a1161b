"""Line files and mapping files: good ones load, bad ones name file, line and field."""

import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gateway.cli import DEMO_LINE
from gateway.config import load_line
from gateway.mapping.compile import load_mapping, mapped_plan
from interface_spec import SpecError, load_spec
from interface_spec.vendor import VENDOR_DIR

GOOD = """\
line: test
equipment:
  - id: c1
    class: coater
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4841/linegw/c1
  - id: f1
    class: formation
    protocol: modbus
    endpoint: 127.0.0.1:5020
    counts: {channel: 8}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_line_file_loads(tmp_path):
    cfg = load_line(write(tmp_path, "line.yaml", GOOD))
    assert [e.id for e in cfg.equipment] == ["c1", "f1"]
    assert cfg.equipment[0].machine == "c1"  # native OPC UA machine defaults to the equipment id
    assert cfg.api.host == "127.0.0.1"  # the API stays on localhost unless configured otherwise


@pytest.mark.parametrize(
    "broken, expected",
    [
        (GOOD.replace("5020", "70000"), "line.yaml:10: equipment[1].endpoint: Value error, port must be 0-65535, got 70000"),
        (GOOD.replace("class: coater", "class: mixer"), "line.yaml:4: equipment[0].class: Input should be 'coater', 'winder' or 'formation'"),
        (GOOD.replace("id: f1", "id: c1"), "line.yaml:3: equipment: 'c1' is the id of equipment[0] and equipment[1]; each machine needs its own"),
        (GOOD.replace("    counts:", "    colour: red\n    counts:"), "line.yaml:11: equipment[1].colour: Extra inputs are not permitted"),
        (GOOD.replace("line: test", "line: [test"), "line.yaml:2: not valid YAML"),
        (GOOD.replace("line: test", "line: test\nforward:\n  influx: {url: influxdb:8086}"),
         "line.yaml:3: forward.influx.url: String should match pattern"),
        (GOOD.replace("line: test", "line: test\nforward:\n  mqtt:\n    port: 1883\n    qos: 2"),
         "line.yaml:5: forward.mqtt.qos: Extra inputs are not permitted"),
        (GOOD.replace("line: test", "line: test\nstore: {max_disk_mb: 0}"),
         "line.yaml:2: store.max_disk_mb: Input should be greater than 0"),
        (GOOD.replace("line: test", "line: test\nstore:\n  records_retention_days: {alarm: 30}"),
         "line.yaml:3: store.records_retention_days.alarm: Extra inputs are not permitted"),
        (GOOD.replace("line: test", "line: test\nstore:\n  records_retention_days: {audit: 0}"),
         "line.yaml:3: store.records_retention_days.audit: Input should be greater than 0"),
    ],
)
def test_bad_line_file_names_file_line_and_field(tmp_path, broken, expected):
    with pytest.raises(SpecError) as exc:
        load_line(write(tmp_path, "line.yaml", broken))
    assert expected.replace("Value error, ", "") in str(exc.value).replace("Value error, ", "")


def test_records_are_kept_for_ever_unless_given_days(tmp_path):
    assert load_line(write(tmp_path, "line.yaml", GOOD)).store.records_retention_days.days() == {}
    text = GOOD.replace("line: test", "line: test\nstore:\n  records_retention_days: {events: 3650, audit: 400}")
    assert load_line(write(tmp_path, "line.yaml", text)).store.records_retention_days.days() == {"events": 3650, "audit": 400}


FORWARD = "line: test\nforward:\n  influx: {url: 'http://127.0.0.1:8428', token_env: LINEGW_TEST_UNSET_TOKEN}\n" \
          "  mqtt: {username: gw, password_env: LINEGW_TEST_UNSET_MQTT}\n"


@pytest.mark.parametrize("broken, expected", [
    # Array sizes: below 1, more than the class has, an array the class has not.
    (GOOD.replace("{channel: 8}", "{channel: -4}"), ["line.yaml:11: equipment[1].counts.channel: Input should be greater than or equal to 1"]),
    (GOOD.replace("{channel: 8}", "{channel: 0}"), ["line.yaml:11: equipment[1].counts.channel: Input should be greater than or equal to 1"]),
    (GOOD.replace("{channel: 8}", "{channel: 4096}"), ["line.yaml:11: equipment[1].counts.channel: 4096 channels; a formation has at most 512"]),
    (GOOD.replace("{channel: 8}", "{chanel: 8}"),
     ["line.yaml:11: equipment[1].counts.chanel: a formation has no array 'chanel' (its arrays: channel)"]),
    # Intervals and the adapters' other settings, read by the adapters' own readers.
    (GOOD.replace("    counts:", "    adapter: {scan_interval_ms: 0}\n    counts:"),
     ["line.yaml:11: equipment[1].adapter.scan_interval_ms: modbus setting scan_interval_ms must be > 0"]),
    (GOOD.replace("    counts:", "    adapter: {scan_interval_ms: -50}\n    counts:"),
     ["line.yaml:11: equipment[1].adapter.scan_interval_ms: modbus setting scan_interval_ms must be a number >= 0, got -50"]),
    (GOOD.replace("    protocol: opcua\n", "    protocol: opcua\n    adapter: {publishing_interval_ms: 0}\n"),
     ["line.yaml:6: equipment[0].adapter.publishing_interval_ms: opcua setting publishing_interval_ms: must be > 0, got 0"]),
    (GOOD.replace("    counts:", "    adapter: {scan_intervall_ms: 100}\n    counts:"),
     ["line.yaml:11: equipment[1].adapter.scan_intervall_ms: not a setting of the modbus adapter; did you mean scan_interval_ms?"]),
    (GOOD.replace("    protocol: opcua\n", "    protocol: opcua\n    adapter: {timeout_s: 3}\n"),
     ["line.yaml:6: equipment[0].adapter.timeout_s: not a setting of the opcua adapter; did you mean request_timeout_s?"]),
    # A key from the file never breaks a message in two (YAML's "\u2028" is a line separator to Python).
    (GOOD.replace("    counts:", '    "col\\u2028our": red\n    counts:'),
     [r"line.yaml:11: equipment[1].col\u2028our: Extra inputs are not permitted"]),
    (GOOD.replace("protocol: modbus", "protocol: modbsu"),
     ["line.yaml:9: equipment[1].protocol: no adapter 'modbsu' is installed (known: {installed})"]),
    # Every secret the file names: the forwarders' too.
    (FORWARD + GOOD.removeprefix("line: test\n"), [
        "line.yaml:3: forward.influx.token_env: environment variable LINEGW_TEST_UNSET_TOKEN (the InfluxDB token) is not set "
        "or empty; token_env: null for a server that takes writes without a token",
        "line.yaml:4: forward.mqtt.password_env: environment variable LINEGW_TEST_UNSET_MQTT (the MQTT password) is not set or empty"]),
    # A key given twice is not the last one winning.
    (GOOD.replace("    counts: {channel: 8}", "    counts: {channel: 8}\n    counts: {channel: 64}"),
     ["line.yaml:12: equipment[1].counts: 'counts' is given twice (first on line 11); keep one"]),
    (GOOD.replace("line: test", "line: test\napi: {port: 8080, port: 8081}"),
     ["line.yaml:2: api.port: 'port' is given twice (first on line 2); keep one"]),
    # The API's address.
    (GOOD.replace("line: test", "line: test\napi: {host: 127.0.0.l}"),
     ["line.yaml:2: api.host: '127.0.0.l' does not resolve to an address (Name or service not known)"]),
    (GOOD.replace("line: test", "line: test\napi: {host: 'localhost:8080'}"),
     ["line.yaml:2: api.host: 'localhost:8080' is neither an IP address nor a host name; give the address to listen on, "
      "e.g. 127.0.0.1 or 0.0.0.0"]),
    (GOOD.replace("line: test", "line: test\napi: {host: 127.0.0.256}"),
     ["line.yaml:2: api.host: '127.0.0.256' is not a valid IPv4 address; give the address to listen on, e.g. 127.0.0.1 or 0.0.0.0"]),
    (GOOD.replace("line: test", "line: test\napi: {port: 70000}"),
     ["line.yaml:2: api.port: Input should be less than or equal to 65535"]),
])
def test_check_config_refuses_what_would_fail_or_be_ignored_at_run_time(tmp_path, monkeypatch, broken, expected):
    for name in ("LINEGW_TEST_UNSET_TOKEN", "LINEGW_TEST_UNSET_MQTT"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, "line.yaml", broken)
    with pytest.raises(SpecError) as exc:
        load_line(path, spec=load_spec())
    # The known adapters are those installed here: the plug-in test installs one more into this environment.
    installed = ", ".join(sorted(ep.name for ep in entry_points(group="linegw.adapters")))
    expected = [e.replace("{installed}", installed) for e in expected]
    assert str(exc.value).splitlines() == [f"{path}:{e.removeprefix('line.yaml:')}" for e in expected]


def test_a_forwarder_without_secrets_or_with_them_set_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("LINEGW_TEST_UNSET_TOKEN", "t0ken")
    monkeypatch.setenv("LINEGW_TEST_UNSET_MQTT", "pw")
    cfg = load_line(write(tmp_path, "line.yaml", FORWARD + GOOD.removeprefix("line: test\n")), spec=load_spec())
    assert cfg.forward and cfg.forward.influx and cfg.forward.influx.token_env == "LINEGW_TEST_UNSET_TOKEN"
    no_token = "line: test\nforward:\n  influx: {url: 'http://127.0.0.1:8428', token_env: null}\n" + GOOD.removeprefix("line: test\n")
    cfg = load_line(write(tmp_path, "line.yaml", no_token), spec=load_spec())
    assert cfg.forward and cfg.forward.influx and cfg.forward.influx.token_env is None


def test_a_mapping_file_with_a_key_given_twice_is_refused(tmp_path):
    text = MAPPING.replace("    scale: 0.1\n", "    scale: 0.1\n    scale: 10\n")
    with pytest.raises(SpecError) as exc:
        load_mapping(write(tmp_path, "m.yaml", text), load_spec())
    assert str(exc.value) == f"{tmp_path / 'm.yaml'}:9: variables[0].scale: 'scale' is given twice (first on line 8); keep one"


@pytest.mark.parametrize("api, expected", [
    ("{host: 127.0.0.l}", "2: api.host: '127.0.0.l' does not resolve to an address (Name or service not known)"),
    ("{host: 192.0.2.1, port: 0}", "2: api.host: cannot listen on 192.0.2.1 port 0: Cannot assign requested address"),
])
def test_a_wrong_api_host_is_one_message_from_run(tmp_path, api, expected):
    line_file = write(tmp_path, "line.yaml", GOOD.replace("line: test", f"line: test\napi: {api}\nstore: {{path: {tmp_path / 's.sqlite'}}}"))
    proc = linegw("run", str(line_file))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {line_file}:{expected}"
    assert "API on" not in proc.stdout


@pytest.mark.parametrize("mapping, expected", [
    ("sztp-winder-opcua", "equipment[1].mapping: sztp-winder-opcua.yaml maps opcua addresses, but winder1 speaks modbus"),
    ("../mappings/sztp-winder-opcua.yaml", "equipment[1].mapping: sztp-winder-opcua.yaml maps opcua addresses, but winder1 speaks modbus"),
    ("../mappings", "equipment[1].mapping: file {mappings} is not a file"),
    ("tobu-winder-modbuss", "equipment[1].mapping: file {vendors}/tobu-winder-modbuss.yaml does not exist (shipped vendor "
                            "files: cellforge-formation-opcua, hanmo-coater-modbus, kawa-coater-opcua, sztp-winder-opcua, "
                            "tobu-winder-modbus, voltra-formation-modbus; or give a path ending in .yaml)"),
])
def test_a_mapping_that_does_not_fit_its_machine_is_refused_at_its_line(tmp_path, mapping, expected):
    """The winder over Modbus given the OPC UA winder's vendor file (shipped, or a copy), a folder, a misspelt name."""
    (tmp_path / "lines").mkdir()
    shutil.copytree(VENDOR_DIR, tmp_path / "mappings")
    text = DEMO_LINE.read_text().replace("mapping: tobu-winder-modbus", f"mapping: {mapping}")
    line_file = write(tmp_path / "lines", "demo.yaml", text)
    proc = linegw("check-config", str(line_file))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {line_file}:24: " + expected.format(mappings=tmp_path / "mappings",
                                                                              vendors=VENDOR_DIR)


def test_missing_mapping_file_is_named(tmp_path):
    text = GOOD.replace("    counts: {channel: 8}", "    mapping: nowhere.yaml")
    with pytest.raises(SpecError, match=r"line.yaml:11: equipment\[1\].mapping: file .*nowhere.yaml does not exist"):
        load_line(write(tmp_path, "line.yaml", text))


def linegw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The `linegw` command itself, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=Path(__file__).parents[2])


def test_check_config_passes_the_demo_line():
    proc = linegw("check-config", str(DEMO_LINE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"OK {DEMO_LINE}: line 'demo', 4 machines")
    assert "winder1" in proc.stdout and "mapping tobu-winder-modbus.yaml" in proc.stdout


def test_check_config_names_file_line_and_field_of_a_broken_file(tmp_path):
    line_file = write(tmp_path, "line.yaml", GOOD.replace("5020", "70000"))
    proc = linegw("check-config", str(line_file))
    assert proc.returncode != 0
    assert f"{line_file}:10: equipment[1].endpoint: " in proc.stderr and "port must be 0-65535" in proc.stderr
    assert "Traceback" not in proc.stderr and "OK" not in proc.stdout


SECURED = GOOD.replace(
    "    endpoint: opc.tcp://127.0.0.1:4841/linegw/c1\n",
    "    endpoint: opc.tcp://127.0.0.1:4841/linegw/c1\n"
    "    security: {mode: SignAndEncrypt, username: line, password_env: LINEGW_TEST_UNSET_PASSWORD}\n",
)
SECRET = "pw-that-must-never-show"


def without_secret() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LINEGW_TEST_UNSET_PASSWORD"}


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_missing_password_is_named_by_check_config_and_stops_run_before_it_starts(tmp_path, command):
    line_file = write(tmp_path, "line.yaml", SECURED)
    proc = linegw(command, str(line_file), env=without_secret())
    assert proc.returncode != 0
    assert (f"{line_file}:7: equipment[0].security.password_env: environment variable LINEGW_TEST_UNSET_PASSWORD "
            "is not set") in proc.stderr
    assert "Traceback" not in proc.stderr and "API on" not in proc.stdout and "OK" not in proc.stdout

    proc = linegw("check-config", str(line_file), env={**without_secret(), "LINEGW_TEST_UNSET_PASSWORD": SECRET})
    assert proc.returncode == 0, proc.stderr  # the same file is fine once the secret is there
    assert SECRET not in proc.stdout + proc.stderr


def test_unreadable_password_file_and_api_key_are_named_together(tmp_path):
    text = SECURED.replace("password_env: LINEGW_TEST_UNSET_PASSWORD", f"password_file: {tmp_path / 'nowhere'}")
    text = text.replace("line: test\n", "line: test\napi:\n  keys: [{user: ops, role: operator, key_env: LINEGW_TEST_UNSET_KEY}]\n")
    path = write(tmp_path, "line.yaml", text)
    with pytest.raises(SpecError) as exc:
        load_line(path)
    lines = str(exc.value).splitlines()
    assert lines == [
        f"{path}:9: equipment[0].security.password_file: cannot read {tmp_path / 'nowhere'}: No such file or directory",
        f"{path}:3: api.keys[0].key_env: environment variable LINEGW_TEST_UNSET_KEY (key of user 'ops') is not set or empty",
    ]
    assert load_line(path, secrets=False).api.keys[0].user == "ops"  # what `linegw simulate` reads


KEYS = """\
api:
  keys:
    - {user: viewer1, role: viewer, key_env: LINEGW_TEST_VIEWER_KEY}
    - {user: engineer1, role: engineer, key_env: LINEGW_TEST_ENGINEER_KEY}
"""
KEY_ENV = {"LINEGW_TEST_VIEWER_KEY": "viewer-key-0123", "LINEGW_TEST_ENGINEER_KEY": "engineer-key-0123"}


@pytest.mark.parametrize("edit, env, expected", [
    (("LINEGW_TEST_ENGINEER_KEY}", "LINEGW_TEST_VIEWER_KEY}"), {},
     "line.yaml:5: api.keys[1].key_env: environment variable LINEGW_TEST_VIEWER_KEY already holds the key of "
     "api.keys[0] (user 'viewer1'); each key entry needs a variable of its own"),
    (("", ""), {"LINEGW_TEST_ENGINEER_KEY": "viewer-key-0123"},
     "line.yaml:5: api.keys[1].key_env: the key in LINEGW_TEST_ENGINEER_KEY is the same as the key of api.keys[0] "
     "(user 'viewer1', LINEGW_TEST_VIEWER_KEY); each user needs a key of its own"),
    (("user: engineer1", "user: viewer1"), {},
     "line.yaml:5: api.keys[1].user: user 'viewer1' already has a key, api.keys[0]; give each user one key and one role"),
])
def test_api_keys_that_collide_are_refused_at_load(tmp_path, monkeypatch, edit, env, expected):
    for name, value in {**KEY_ENV, **env}.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, "line.yaml", "line: test\n" + KEYS.replace(*edit) + GOOD.removeprefix("line: test\n"))
    with pytest.raises(SpecError) as exc:
        load_line(path)
    assert str(exc.value) == f"{path}:{expected.removeprefix('line.yaml:')}"
    assert "key-0123" not in str(exc.value)  # never the key itself


def test_distinct_api_keys_load(tmp_path, monkeypatch):
    for name, value in KEY_ENV.items():
        monkeypatch.setenv(name, value)
    cfg = load_line(write(tmp_path, "line.yaml", "line: test\n" + KEYS + GOOD.removeprefix("line: test\n")))
    assert [(k.user, k.role) for k in cfg.api.keys] == [("viewer1", "viewer"), ("engineer1", "engineer")]


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_viewer_and_an_engineer_sharing_a_key_stop_check_config_and_run(tmp_path, command):
    """The file that gave a viewer's key an engineer's rights: refused before anything is served."""
    text = "line: test\n" + KEYS.replace("ENGINEER_KEY}", "VIEWER_KEY}") + GOOD.removeprefix("line: test\n")
    line_file = write(tmp_path, "line.yaml", text)
    proc = linegw(command, str(line_file), env={**os.environ, **KEY_ENV})
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: {line_file}:5: api.keys[1].key_env: environment variable LINEGW_TEST_VIEWER_KEY "
                                   "already holds the key of api.keys[0] (user 'viewer1'); each key entry needs a variable of its own")
    assert "API on" not in proc.stdout and "OK" not in proc.stdout


MAPPING = """\
mapping: test-winder
class: winder
protocol: modbus
modbus: {order: CDAB}
variables:
  - path: winding.speed
    source: {address: 100, dtype: int16}
    scale: 0.1
  - path: state.packml_state
    source: {address: 101, dtype: uint16}
    enum: {1: Stopped, 2: Idle, 3: Execute}
  - path: state.control_authority
    source: {address: 102, dtype: uint16, bit: 2}
    enum: {0: Local, 1: Remote}
  - path: environment.dew_point
    source: {address: 104, dtype: float32}
    from_unit: K
alarms:
  - {alarm: separator_break, source: {address: 103, dtype: uint16, bit: 0}}
commands:
  Start: {write: {address: 200, value: 1}}
identification: {manufacturer: Acme Winding}
events:
  - on_change: jelly_roll.roll_id
    type: UnitProcessed
    payload: {unit_id: $jelly_roll.roll_id, made_from: [$before:material.cathode_roll_id]}
"""


def test_mapping_compiles_transforms_into_targets(tmp_path):
    spec = load_spec()
    m = load_mapping(write(tmp_path, "m.yaml", MAPPING), spec)
    plan = mapped_plan(spec, "w1", m, {})
    by_path = {t.path: t for ts in plan.targets.values() for t in ts}
    assert by_path["winding.speed"].scale == 0.1
    assert by_path["state.packml_state"].enum_map == {1: 2, 2: 4, 3: 6}  # vendor code -> PackML code
    assert by_path["state.control_authority"].bit == 2
    assert by_path["environment.dew_point"].offset == pytest.approx(-273.15)
    speed_point = next(p for p in plan.points if p.options.get("address") == 100)
    assert speed_point.options["order"] == "CDAB"  # the file's default order reaches every source
    assert any(p.key == "cmdw:Start" and p.options["scan"] is False for p in plan.points)
    assert plan.nameplate == {"identification.manufacturer": "Acme Winding"}
    [trigger] = plan.triggers["jelly_roll.roll_id"]
    assert (trigger.event.type, trigger.index) == ("UnitProcessed", None)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("winding.speed", "winding.sped"), "m.yaml:6: variables[0].path: winder has no variable 'winding.sped'"),
        (("3: Execute", "3: Running"), "m.yaml:11: variables[1].enum[3]: 'Running' is not a member of packml_state"),
        (("alarm: separator_break", "alarm: web_break"), "m.yaml:19: alarms[0].alarm: 'web_break' is not an alarm of winder"),
        (("  Start:", "  Launch:"), "m.yaml:21: commands.Launch: 'Launch' is not a spec command"),
        (("from_unit: K", "from_unit: bar"), "m.yaml:17: variables[3].from_unit: no conversion from 'bar' to 'Cel' "
                                             "(units that convert to it: Cel, K, [degF])"),
        (("from_unit: K", "from_unit: Kel"), "m.yaml:17: variables[3].from_unit: unknown unit 'Kel': not a UCUM code "
                                             "('Kel' is not a UCUM unit atom (with optional prefix and exponent)); "
                                             "did you mean 'Cel'? Units that convert to 'Cel': Cel, K, [degF]"),
        (("{address: 100, dtype: int16}", "{address: 100}"), "m.yaml:7: variables[0].source: a Modbus source needs 'dtype'"),
        (("{manufacturer: Acme", "{maker: Acme"), "m.yaml:22: identification.maker: 'maker' is not an identification variable"),
        (("$before:material.cathode_roll_id", "$before:material.cathode_roll"),
         "m.yaml:26: events[0].payload.made_from[0]: winder has no variable 'material.cathode_roll'"),
        (("on_change: jelly_roll.roll_id", "on_change: jelly_roll[*].roll_id"),
         "m.yaml:24: events[0].on_change: 'jelly_roll' is not an array sub-unit"),
        (("unit_id: $jelly_roll.roll_id", 'unit_id: "$channel[*].cell_id"'),
         "m.yaml:26: events[0].payload.unit_id: 'channel[*].cell_id': '[*]' needs an on_change path with '[*]'"),
    ],
)
def test_bad_mapping_is_rejected_with_its_line(tmp_path, edit, expected):
    with pytest.raises(SpecError) as exc:
        load_mapping(write(tmp_path, "m.yaml", MAPPING.replace(*edit)), load_spec())
    assert expected in str(exc.value)


def unmapped_warning(stderr: str, eid: str) -> list[str]:
    """The mandatory variables check-config says a machine's mapping leaves unmapped."""
    [line] = [x for x in stderr.splitlines() if x.startswith(f"warning: {eid}: ")]
    return line.split(" unmapped: ", 1)[1].split(", ")


def test_check_config_lists_the_mandatory_variables_a_mapping_leaves_unmapped_and_strict_refuses(tmp_path):
    (tmp_path / "lines").mkdir()
    shutil.copytree(VENDOR_DIR, tmp_path / "mappings")
    text = DEMO_LINE.read_text().replace("mapping: tobu-winder-modbus", "mapping: ../mappings/tobu-winder-modbus.yaml")
    line_file = write(tmp_path / "lines", "demo.yaml", text)
    before = linegw("check-config", str(line_file))
    assert before.returncode == 0, before.stderr
    gaps = unmapped_warning(before.stderr, "winder1")
    assert "winding.speed" not in gaps and "identification.equipment_class" in gaps
    assert f"winder1: tobu-winder-modbus.yaml leaves {len(gaps)} mandatory variables unmapped" in before.stderr

    # One mandatory variable taken out of the mapping: named at once, not first by the conformance kit.
    mapping = tmp_path / "mappings" / "tobu-winder-modbus.yaml"
    mapping.write_text("\n".join(x for x in mapping.read_text().splitlines() if "path: winding.speed," not in x) + "\n")
    after = linegw("check-config", str(line_file))
    assert after.returncode == 0
    assert sorted(unmapped_warning(after.stderr, "winder1")) == sorted([*gaps, "winding.speed"])

    strict = linegw("check-config", str(line_file), "--strict")
    assert strict.returncode == 1
    errors = strict.stderr.strip().splitlines()
    assert errors[0] == f"error: winder1: tobu-winder-modbus.yaml leaves {len(gaps) + 1} mandatory variables unmapped: " \
                        + ", ".join(unmapped_warning(after.stderr, "winder1"))
    assert errors[1].startswith("error: winder2: sztp-winder-opcua.yaml leaves ")


HASH = "4c8f2e1a" * 8  # a key's SHA-256, as `linegw keys new` writes it


@pytest.mark.parametrize("keys, expected", [
    (f"    - {{user: a, role: viewer, key_env: LINEGW_TEST_VIEWER_KEY, key_sha256: {HASH}}}\n",
     "line.yaml:4: api.keys[0]: user 'a': give the key as key_env (an environment variable) or as "
     "key_sha256 (its hash, from `linegw keys new`), one of the two"),
    ("    - {user: a, role: viewer}\n",
     "line.yaml:4: api.keys[0]: user 'a': give the key as key_env (an environment variable) or as "
     "key_sha256 (its hash, from `linegw keys new`), one of the two"),
    ("    - {user: a, role: viewer, key_sha256: abc}\n",
     "line.yaml:4: api.keys[0].key_sha256: String should match pattern '^[0-9a-f]{64}$'"),
    (f"    - {{user: a, role: viewer, key_sha256: {HASH}}}\n    - {{user: b, role: engineer, key_sha256: {HASH}}}\n",
     "line.yaml:5: api.keys[1].key_sha256: this key_sha256 is the same as the key of api.keys[0] (user 'a'); "
     "each user needs a key of its own"),
])
def test_a_key_given_by_its_hash_or_wrongly(tmp_path, monkeypatch, keys, expected):
    monkeypatch.setenv("LINEGW_TEST_VIEWER_KEY", "viewer-key-0123")
    path = write(tmp_path, "line.yaml", "line: test\napi:\n  keys:\n" + keys + GOOD.removeprefix("line: test\n"))
    with pytest.raises(SpecError) as exc:
        load_line(path)
    assert str(exc.value) == f"{path}:{expected.removeprefix('line.yaml:')}"


def test_a_key_by_its_hash_needs_no_secret(tmp_path):
    path = write(tmp_path, "line.yaml", f"line: test\napi:\n  keys:\n    - {{user: a, role: viewer, key_sha256: {HASH}}}\n"
                 + GOOD.removeprefix("line: test\n"))
    assert load_line(path).api.keys[0].digest() == bytes.fromhex(HASH)


@pytest.mark.parametrize("edit, line, expected", [
    (("source: {address: 104, dtype: float32}", "source: {address: 104, dtype: flaot32}"), 16,
     "variables[3].source.dtype: unknown dtype 'flaot32'; did you mean 'float32'?"),
    (("source: {address: 104, dtype: float32}", "source: {address: 104, table: coil}"), 16,
     "variables[3].source.table: 'environment.dew_point' is a float; a coil holds one bit"),
    (("source: {address: 104, dtype: float32}", "source: {address: 104, table: discrete, dtype: uint16}"), 16,
     "variables[3].source.dtype: a discrete holds one bit, not a uint16: read it from a holding or input register"),
    (("source: {address: 104, dtype: float32}", "source: {address: 99, dtype: float32}"), 7,
     "variables[0].source.address: holding registers 100..100 overlap those of variables[3] "
     "('environment.dew_point', 99..100); each register feeds one variable (bit fields of one register excepted)"),
])
def test_modbus_sources_that_would_read_wrongly_are_refused_at_their_line(tmp_path, edit, line, expected):
    with pytest.raises(SpecError) as exc:
        load_mapping(write(tmp_path, "m.yaml", MAPPING.replace(*edit)), load_spec())
    assert str(exc.value) == f"{tmp_path / 'm.yaml'}:{line}: {expected}"


def test_bit_fields_of_one_register_share_it_and_a_short_stride_is_found(tmp_path):
    shared = MAPPING.replace("source: {address: 102, dtype: uint16, bit: 2}", "source: {address: 101, dtype: uint16, bit: 2}")
    with pytest.raises(SpecError, match=r"variables\[2\]\.source\.address: holding registers 101\.\.101 overlap"):
        load_mapping(write(tmp_path, "m.yaml", shared), load_spec())  # packml_state reads all of 101
    fields = MAPPING.replace("source: {address: 101, dtype: uint16}", "source: {address: 102, dtype: uint16, bit: 0, bits: 2}")
    assert load_mapping(write(tmp_path, "m.yaml", fields), load_spec())  # bits 0-1 and bit 2 of register 102
    lanes = MAPPING.replace("identification: {manufacturer: Acme Winding}",
                            "identification: {manufacturer: Acme Winding}").replace(
        "  - path: environment.dew_point\n", "  - path: electrode_feed[*].tension\n    source: {address: 300, dtype: float32, stride: 1}\n"
        "  - path: environment.dew_point\n")
    with pytest.raises(SpecError, match=r"instances 1 and 2 of 'electrode_feed\[\*\]\.tension' overlap: stride 1 is "
                                        r"shorter than the value's registers"):
        load_mapping(write(tmp_path, "m.yaml", lanes), load_spec())


def test_a_command_write_without_a_place_is_refused_at_its_line(tmp_path):
    """Found by the mapping mutation test (tests/fuzz): a command `write` with neither address nor node loaded, and
    then broke building the plan with a raw validation error."""
    text = MAPPING.replace("Start: {write: {address: 200, value: 1}}", "Start: {write: {value: 1}}")
    assert text != MAPPING
    with pytest.raises(SpecError) as exc:
        load_mapping(write(tmp_path, "m.yaml", text), load_spec())
    assert "m.yaml:21: commands.Start.write: " in str(exc.value)
    assert "give either 'address' (Modbus) or 'node' (OPC UA) to write the command to" in str(exc.value)
