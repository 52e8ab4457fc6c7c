"""Spektron: oscillatory state-space models for vibrational spectroscopy."""

__version__ = "0.1.0"
