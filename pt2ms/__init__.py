"""pt2ms: move trained PyTorch weights into MindSpore models, and prove the result numerically."""

import os

# MindSpore 2.10's oneDNN picks a reference kernel for k x k convolutions on AVX-512 CPUs, 80-150x slower
# than it should be (a ResNet-50 forward: 25 s instead of 0.4 s). Capping the ISA at AVX2 avoids it; it
# must be set before the first convolution runs. A value the user set wins.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
