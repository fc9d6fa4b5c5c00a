"""`python -m benchmarks`: raw onnxruntime throughput vs. the real service under `hey` load.

raw.py       onnxruntime alone: the ceiling the service is compared against
payloads.py  request bodies built from real Fashion-MNIST test images
load.py      start the service, drive it with hey, parse hey's summary
memory.py    worker RSS across two rounds of 10,000 requests (leak check)
report.py    the markdown table and the results file
"""
