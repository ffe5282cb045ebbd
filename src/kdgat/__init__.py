"""kdgat: configuration-driven experiments for graph-neural-network CAN-bus intrusion detection."""

__version__ = "0.1.0"
