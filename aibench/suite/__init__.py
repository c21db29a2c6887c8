"""Suites: the TOML model (model), its checker (check), loading (load), the case plan, and the
session and suite run that write a run directory (session, run); the catalog of what exists."""
