"""Whistle: 吹哨报到 intake and routing over Telegram."""

__version__ = "0.1.0"
