"""Modbus TCP: the adapter and the request planner (the register codec is the standard's: interface_spec.modbus_codec)."""

from gateway.adapters.modbus.adapter import ModbusAdapter

__all__ = ["ModbusAdapter"]
