"""The fast tier: no Ray cluster, no CLI process, no server outside the test process."""
