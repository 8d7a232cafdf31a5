"""Pure data of the system: the job spec and its validation, statuses, and the /opt/ml contract."""
