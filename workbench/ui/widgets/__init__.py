"""Widgets of the Textual app; each uses only theme variables for colour."""
