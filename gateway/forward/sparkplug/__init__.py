"""Sparkplug B: the line on the plant's MQTT backbone as an edge node (forwarder.py), its payloads
(payload.py) and their protobuf schema (sparkplug_b.proto, with the module generated from it)."""

from gateway.forward.sparkplug.forwarder import SparkplugForwarder

__all__ = ["SparkplugForwarder"]
