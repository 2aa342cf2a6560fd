"""Tests against a real Ray cluster, through the judge pool."""
