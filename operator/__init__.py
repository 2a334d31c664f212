"""carbontrack.operator (installed from the top-level operator/ folder)."""
