"""Client image bytes → a small Pillow image, in this process when that is provably cheap, else in a limited one.

`pixels` is the decoding itself (Pillow only), `admit` the cheap look at headers that decides
where an image decodes, `sandbox` the pool of decoder processes the kernel limits, and `child`
the program each of them runs.
"""
