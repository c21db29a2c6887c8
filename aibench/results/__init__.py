"""Results: the run directory a session writes, loading it back, and comparing two runs."""
