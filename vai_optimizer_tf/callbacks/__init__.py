"""Keras callbacks for pruning schedules (see the training issue)."""
