"""coarse."""
