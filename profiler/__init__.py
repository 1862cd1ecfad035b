"""lutnas profiler: the search space, block export, measurement on devices and versioned latency tables."""

__version__ = "0.1.0"
