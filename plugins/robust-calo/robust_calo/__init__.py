"""Calorimeter tasks for robust: single photons in an LHCb-like Shashlik ECAL (15x15 cells)."""

__version__ = "0.1.0"
