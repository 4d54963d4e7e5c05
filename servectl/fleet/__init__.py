"""Several models behind one endpoint: placement from plans, start / swap / sleep, queueing."""
