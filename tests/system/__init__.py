"""System tests: whole processes as a person runs them, each with a cluster of its own."""
