"""Line-file models of the optional `forward:` section."""

from __future__ import annotations

from pydantic import BaseModel, Field


class InfluxForward(BaseModel):
    url: str
    org: str = "linegw"
    bucket: str = "linegw"
    token_env: str = "LINEGW_INFLUX_TOKEN"
    batch_size: int = Field(5000, ge=1)
    consumer: str = "influx"
    backoff_max_s: float = Field(30.0, gt=0)
    poll_s: float = Field(0.5, gt=0)


class MqttForward(BaseModel):
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password_env: str | None = None
    base_topic: str = "linegw"


class ForwardConfig(BaseModel):
    influx: InfluxForward | None = None
    mqtt: MqttForward | None = None
