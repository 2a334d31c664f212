"""Packaged coefficient tables for carbontrack.sources (see PROVENANCE.md)."""
