"""pip-gpu: install the PyTorch build that really runs on this machine.

The pipeline, one module per step: ``detect`` (the host) -> ``decide`` (the build, a pure
function) -> ``route`` (requirements and indexes for the installer) -> ``installers`` (real
pip or uv) -> ``lockfile`` (the decision written down for a team).
"""

__version__ = "0.1.0"
