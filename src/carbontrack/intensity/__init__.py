"""carbontrack.intensity."""
