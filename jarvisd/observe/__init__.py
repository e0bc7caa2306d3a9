"""Self-observation: the metrics registry, memory sampling and modes, alert rules, latency windows.

These modules observe the others and never reach into them.
"""
