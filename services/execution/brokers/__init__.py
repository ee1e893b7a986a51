"""Broker adapters: the port (`base`) and the paper broker (`paper`)."""

from services.execution.brokers.base import BrokerAdapter, BrokerReport, BrokerUnavailable, Fill

__all__ = ["BrokerAdapter", "BrokerReport", "BrokerUnavailable", "Fill"]
