"""Turning a rollout into a prompt and the judge's answer into a score."""
