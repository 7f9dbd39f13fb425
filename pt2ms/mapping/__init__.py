"""The MindSpore <-> PyTorch name map: the transform language, the map file, the matcher (names, layers,
fused projections), uneven splits, and the numeric probe that settles what names and shapes cannot.

May import pt2ms.errors, pt2ms.formats, pt2ms.config and pt2ms.running; never verify or stages.
"""
