"""OPC UA client adapter: the `opcua` entry of the `linegw.adapters` entry point."""

from gateway.adapters.opcua.adapter import OpcUaAdapter

__all__ = ["OpcUaAdapter"]
