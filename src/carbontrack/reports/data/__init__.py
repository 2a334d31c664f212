"""Packaged embodied-emissions coefficients (see PROVENANCE.md)."""
