"""gradtx inside other libraries: optax's contract and names, optax and flax machinery,
optimistix, orbax."""
