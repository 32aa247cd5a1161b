"""Store-and-forward: outbox consumers that copy stored samples to InfluxDB (and MQTT)."""
