"""corral's control plane: the job model, policies, store, server, CLI and simulator."""

__version__ = "0.1.0"
