"""The sampling-preset proxy in front of a vLLM server."""
