"""Library-wide tests: properties of every transform over random pytrees, donation, and
accumulator dtypes (no single module of gradtx owns them)."""
