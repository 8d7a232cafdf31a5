"""Scheduling: the instance catalogue and the loop that launches and watches jobs."""
