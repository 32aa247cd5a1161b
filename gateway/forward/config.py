"""Line-file models of the optional `forward:` section (see deploy/README.md, "Forwarding")."""

from __future__ import annotations

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


class MqttForward(_Sink):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = None  # environment variable holding the password
    base_topic: str = Field("linegw", pattern=r"^[^#+]+$")
    batch_size: int = Field(1000, ge=1)
    consumer: str = "mqtt"


class ForwardConfig(_Strict):
    influx: InfluxForward | None = None
    mqtt: MqttForward | None = None
