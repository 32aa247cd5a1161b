"""Line-file models of the optional `forward:` section (see deploy/README.md, "Forwarding")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sink(_Strict):
    backoff_max_s: float = Field(30.0, gt=0)  # longest wait between retries while the sink is away
    max_lag_s: float = Field(300.0, gt=0)  # /health says "degraded" when the oldest sample waiting is older


class InfluxForward(_Sink):
    url: str = Field(pattern=r"^https?://")
    org: str = "linegw"
    bucket: str = "linegw"
    # Environment variable holding the API token; null for a server that takes writes without one.
    token_env: str | None = "LINEGW_INFLUX_TOKEN"
    batch_size: int = Field(5000, ge=1)
    consumer: str = "influx"  # outbox cursor name; a second InfluxDB sink needs its own
    poll_s: float = Field(0.5, gt=0)


class _Broker(_Sink):
    """An MQTT broker to publish to."""
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = None  # environment variable holding the password


class MqttForward(_Broker):
    # A Unified Namespace in the ISA-95 shape: enterprise/site/area here, then <line>/<machine>/<path>.
    base_topic: str = Field("linegw", pattern=r"^[^#+]+$")
    # Every value retained (the current value for a subscriber that comes late), not only identity and state.
    retain_values: bool = False
    # Retained `<topic>/$meta` beside each variable: unit, datatype, range, resolution, description.
    metadata: bool = False
    batch_size: int = Field(1000, ge=1)
    consumer: str = "mqtt"


class BackboneCommands(_Strict):
    """Commands from the MQTT backbone (Sparkplug DCMD), off unless this is given: the identity they act as.

    MQTT messages carry no caller: whoever the broker lets publish on the line's DCMD topics commands
    as this user and role, through the same interlocks and audit log as the REST API.
    """
    user: str = Field("sparkplug", pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["operator", "engineer"] = "operator"


class SparkplugForward(_Broker):
    """Eclipse Sparkplug B 3.0: the gateway is an edge node, each machine a device (deploy/README.md, "Sparkplug B")."""
    group_id: str = Field("linegw", pattern=r"^[^/+#]+$")
    edge_node_id: str | None = Field(None, pattern=r"^[^/+#]+$")  # the line's name when not given
    # With a primary host, nothing is published until it says it is online (spBv1.0/STATE/<id>), and the
    # node goes offline (NDEATH) while it is not: the outbox holds the data meanwhile.
    primary_host_id: str | None = Field(None, pattern=r"^[^/+#]+$")
    batch_size: int = Field(500, ge=1)  # metrics per DDATA message
    # Samples recorded this long before they are sent go out with is_historical (a backlog after an outage).
    historical_after_s: float = Field(10.0, gt=0)
    commands: BackboneCommands | None = None  # DCMD off when absent: refused, logged and audited
    consumer: str = "sparkplug"
    poll_s: float = Field(0.2, gt=0)


class ForwardConfig(_Strict):
    influx: InfluxForward | None = None
    mqtt: MqttForward | None = None
    sparkplug: SparkplugForward | None = None
