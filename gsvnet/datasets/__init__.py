"""Readers of the labelled datasets GSVNet is trained and scored on (CamVid, Cityscapes).

They sit below ``training`` and ``runtime`` alike, and depend on NumPy and Pillow only.
"""
