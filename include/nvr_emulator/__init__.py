"""Local emulator of the National Vaccination Register API (NVR API 2.0).

It implements the contract in REGISTRY.md and nothing of the pipeline: it imports no
``vaxreport`` code, so it checks the pipeline instead of echoing it. Start it with
``python -m nvr_emulator`` or, in tests, with :func:`nvr_emulator.server.run_in_thread`.
"""

from nvr_emulator.config import EmulatorConfig

__all__ = ["EmulatorConfig"]
__version__ = "0.1.0"
