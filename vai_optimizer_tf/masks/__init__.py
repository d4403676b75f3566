"""Per-weight channel masks and the sparse model."""
