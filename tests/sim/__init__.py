"""The in-memory multi-node harness (:mod:`tests.sim.network`: what it is for and how to write a
scenario) and its scenarios (``test_*.py``): lispd nodes wired together on a fake clock."""
