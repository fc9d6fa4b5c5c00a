"""`python -m benchmarks`: raw onnxruntime vs. a naive Flask app vs. the real service, under wrk (or hey) load.

raw.py         onnxruntime alone: the ceiling the servers are compared against
naive_app.py   the baseline: the plain Flask + gunicorn sync script a user would write instead (issue 15)
payloads.py    request bodies built from real Fashion-MNIST test images, the same pixels for every server
servers.py     start the service or the naive app on a free loopback port; wait until one is idle
generators.py  wrk (default; wrk.lua posts the body and prints a JSON summary) and hey, behind one Summary
load.py        every scenario at every concurrency against one server
memory.py      worker RSS across two rounds of 10,000 requests (leak check; hey -n)
report.py      the markdown table, its ratios to raw and to the naive app, and the results file
profile.py     `python -m benchmarks.profile`: py-spy on one worker under wrk load; stacks.py reads its output
soak.py        `python -m benchmarks.soak`: paced mixed traffic with scrapes, admin calls and publishes; errors and RSS
decode_cost.py `python -m benchmarks.decode_cost`: memory and CPU of the worst images the pixel budgets allow
http_attacks.py `python -m benchmarks.http_attacks [--root CHECKOUT]`: issue 19's attacks on the front door, health meanwhile
json_cost.py   `python -m benchmarks.json_cost`: worker CPU of adversarial 8 MiB JSON bodies
worst_images.py  those images: tiny files that decode to the most pixels allowed (also used by tests/hostile_images.py)
"""
