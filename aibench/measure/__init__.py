"""Measurement: the case types a workload hands over, the timer, the runner that turns one case
into one record, and the versioned record schema. Never imports click or a workload module."""
