"""carbontrack.sources."""
