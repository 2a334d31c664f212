"""Packaged catalogue data (built by scripts/build_catalogue.py; do not edit by hand).

A package (this file) so that setuptools ships the data files with the wheel.
"""
