"""Differential tests: gradtx run side by side with torch.optim, optax, Keras 3, and
NumPy references written from the Lucid and Dragon API pages; and the torch bridge.

Each test reports the scaled error it reached (max over steps of
max|ours - theirs| / max|theirs|, per dtype) and its tolerance (``tests/_tolerance.py``,
measured from the reference's own conditioning) into :data:`tests._tolerance.REPORT`;
``tests/conftest.py`` prints the table at the end of the session.
"""
