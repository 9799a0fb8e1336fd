"""The engine boundary: the Protocol an engine implements (protocol), how engines are found (discovery), what
the setup fetches for them (requirements), and the shared base for one-process local jobs (local_job)."""

from harness.engines.protocol import (Capabilities, Engine, EngineBase, EngineContext, EngineRefused, EngineSettings,
                                      Plan, Position, Skip)

__all__ = ["Capabilities", "Engine", "EngineBase", "EngineContext", "EngineRefused", "EngineSettings", "Plan",
           "Position", "Skip"]
