"""Bridges between gradtx state and other libraries' state formats.

Nothing in the core imports this package, and importing it imports no third-party
library: each bridge is its own module (``gradtx.interop.torch`` needs ``torch``).
"""
