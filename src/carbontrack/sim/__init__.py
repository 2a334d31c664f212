"""carbontrack.sim."""
