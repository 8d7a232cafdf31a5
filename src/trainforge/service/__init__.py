"""Use cases: the only place routes and the scheduler change state, always through the store."""
