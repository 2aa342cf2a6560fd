"""Is the reward right: labelled judge evaluations (``ray-judge eval``), validation of a
backend on every switch, live canaries against answers that fool judges, length bias."""
