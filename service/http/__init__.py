"""The front door: bytes ⇄ requests through llhttp, in a gunicorn worker whose threads only compute."""
