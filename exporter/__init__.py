"""carbontrack.exporter (installed from the top-level exporter/ folder)."""
