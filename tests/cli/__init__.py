"""The Claude Code backends: the real CLI where it is installed, and fake_claude.py here
for the faults the real one cannot be made to show."""
