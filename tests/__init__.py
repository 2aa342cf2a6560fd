"""ray_judge's tests: a regular package, so that a ``tests`` package another distribution
installs into site-packages (verl and openrlhf ship one) never shadows this one."""
