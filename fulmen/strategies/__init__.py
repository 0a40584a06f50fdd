"""Strategies: how the module and its data are placed on the devices of a run."""

from fulmen.strategies.single_device import SingleDeviceStrategy

Strategy = SingleDeviceStrategy

__all__ = ["SingleDeviceStrategy", "Strategy"]
