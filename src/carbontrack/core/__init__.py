"""carbontrack.core."""
