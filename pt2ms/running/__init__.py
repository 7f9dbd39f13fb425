"""Building and running the two models: factories and Hugging Face folders, loading weights into them, seeded
inputs, one hooked forward pass that records each layer (recording, isolation), layer settings read from
both frameworks, and the numeric rules that compare two arrays (compare).

May import pt2ms.errors, pt2ms.formats and pt2ms.config; never mapping, verify or stages.
"""
