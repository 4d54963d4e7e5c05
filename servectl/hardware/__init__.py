"""What machine this is: probes (NVML, rocm-smi, psutil), parsers of captured outputs, profile matching, pre-flight."""
