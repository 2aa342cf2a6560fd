"""Which backend serves: the spec grammar, the override file and its resolution, and
notifying a running judge of a switch."""
