"""Workbench: a terminal workbench for ML projects."""

__version__ = "0.1.0"
