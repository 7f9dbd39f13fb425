"""Files on disk, read and written without either framework: checkpoints (.pth, .ckpt, safetensors, shard
indexes), Hugging Face folder layouts, inventories and other CSV/txt tables, atomic writes and locks.

The bottom layer: it imports only pt2ms.errors (and numpy). Every layer above may import it.
"""
