"""Seeing a running judge: the Grafana dashboard that ships with the package
(:mod:`.dashboard`) and the live terminal view of ``ray-judge watch`` (:mod:`.watch`)."""
