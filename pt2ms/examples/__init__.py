"""The bundled example models (the configs in configs/ name them): user-side code, as a user would write it,
so it imports nothing from pt2ms and may import only torch, MindSpore and the packages they need."""
