"""vLLM's memory predicted before anything loads: the planner, calibration from real logs, log and checkpoint reading."""
