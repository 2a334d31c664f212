"""carbontrack.tracker."""
