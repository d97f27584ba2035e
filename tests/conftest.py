"""Shared test fixtures: the fake NVML library and the PyTorch-like index on loopback."""

pytest_plugins = ["support.fake_nvml", "support.index"]
