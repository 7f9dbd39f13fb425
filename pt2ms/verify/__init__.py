"""Checking that the converted model computes what PyTorch does: pairing layers through the map, comparing
them in place and in isolation, naming the cause, the reports, and the one-training-step check.

May import pt2ms.errors, pt2ms.formats, pt2ms.config, pt2ms.running and pt2ms.mapping; never stages.
"""
