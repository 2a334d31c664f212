"""Live grid-intensity providers. Each wraps the static catalogue and falls back to it,
visibly (``IntensityFactor.fallback_reason``), when the API fails."""
