"""Array kernels: Numba implementations in ``kernels`` and their NumPy twins in ``reference``.

This folder ships as ``vecstore._native``; it imports nothing from vecstore.
"""
