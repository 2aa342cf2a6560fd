"""Seeing a running judge: the Grafana dashboard that ships with the package
(:mod:`.dashboard`), the live terminal view of ``ray-judge watch`` (:mod:`.watch`), and
the one reading of the judge's status that it and ``ray-judge status`` share
(:mod:`.status_view`)."""
