"""The vLLM environment seen from outside: interpreter probing, bootstrap, patches, the tiny test model, vLLM argv handling."""
