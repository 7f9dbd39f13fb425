"""pt2ms: move trained PyTorch weights into MindSpore models, and prove the result numerically.

Layers, bottom to top; a module imports only from its own layer or the layers below it (tests/test_layering.py
checks this, and that no imports go in a circle):

    errors     the exception types every layer raises
    formats/   files on disk: checkpoints, Hugging Face folder layouts, inventories and tables
    config     a run's TOML config, checked against one schema
    running/   building and running both models: factories, weights, inputs, recording, settings, compare
    mapping/   the name map: transforms, map file, matcher, splits, probe
    verify/    stage 4's machinery: pairing, layer comparison, diagnosis, reports, training
    stages/    the four stages the numbered scripts call, and the scripts' shared cli
    __main__   the `pt2ms` command
    examples/  the bundled example models (imports nothing from pt2ms)
"""

import os

# MindSpore 2.10's oneDNN picks a reference kernel for k x k convolutions on AVX-512 CPUs, 80-150x slower
# than it should be (a ResNet-50 forward: 25 s instead of 0.4 s). Capping the ISA at AVX2 avoids it; it
# must be set before the first convolution runs. A value the user set wins.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
