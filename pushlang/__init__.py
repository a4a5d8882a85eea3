"""pushlang: campaigns-as-code for web push notifications."""

__version__ = "0.1.0"
