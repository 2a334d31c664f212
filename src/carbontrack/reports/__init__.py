"""carbontrack.reports."""
