"""Modbus TCP: the adapter, the register codec and the request planner."""

from gateway.adapters.modbus.adapter import ModbusAdapter

__all__ = ["ModbusAdapter"]
