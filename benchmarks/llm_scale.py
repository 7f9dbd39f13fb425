"""All four stages on a LLaMA-shaped pair of a given size: each stage's wall time and peak memory.

The PyTorch side is a Hugging Face folder as LLMs are published: `config.json`, bf16 weights in safetensors
shards and `model.safetensors.index.json`, written tensor by tensor with seeded random values (never held
whole), named as transformers' `LlamaForCausalLM`, which stage 1 builds from `config.json` (no factory). The
MindSpore side is mindformers 2.1.0's `LlamaForCausalLM` with `qkv_concat=True` (float32, PyNative, CPU), so
stage 2 must find the interleaved `w_qkv` and `w_gate_hidden`. Each stage runs as its own process (imports
count); peak RSS is the child's own (os.wait4).

mindformers is a benchmark-only dependency, not in the requirements files (it pins mindspore~=2.11, but its
legacy LLaMA runs on 2.10 on CPU):
    .venv/bin/pip install --no-deps mindformers==2.1.0
    .venv/bin/pip install deprecated requests jieba rouge_chinese "datasets<4" "pyarrow<19" sentencepiece \
        tiktoken mindpet tensorboardX   # what it imports; datasets 5 / pyarrow 19+ need NumPy 2

    .venv/bin/python benchmarks/llm_scale.py --preset tiny
    .venv/bin/python benchmarks/llm_scale.py --preset 3b --work /data/llm3b
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pt2ms.formats.safetensors_file import write_safetensors  # noqa: E402
from pt2ms.formats.tensors import float32_to_bfloat16  # noqa: E402

PRESETS = {  # hidden, layers, heads, kv_heads, intermediate, vocab
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=160, vocab=1000),
    "1b": dict(hidden=2048, layers=16, heads=16, kv_heads=8, intermediate=5632, vocab=32000),
    "3b": dict(hidden=3072, layers=28, heads=24, kv_heads=8, intermediate=8192, vocab=32000),
    "7b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=11008, vocab=32000),
}
SHARD_BYTES = 2 << 30
STAGES = ["1_show.py", "2_build_map.py", "3_pth2ckpt.py", "4_verify.py"]


def mindformers_llama(hidden, layers, heads, kv_heads, intermediate, vocab, seq):
    """The MindSpore side: mindformers 2.1.0's LlamaForCausalLM, float32, set up to run on CPU in PyNative."""
    import mindspore as ms
    from mindformers.models.llama import LlamaConfig, LlamaForCausalLM

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    config = LlamaConfig(batch_size=1, seq_length=seq, hidden_size=hidden, num_layers=layers, num_heads=heads,
                         n_kv_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
                         compute_dtype="float32", layernorm_compute_type="float32", softmax_compute_type="float32",
                         rotary_dtype="float32", param_init_type="float32", qkv_concat=True, use_rope_slice=True,
                         fused_rms_norm=False, use_flash_attention=False, use_past=False)
    return LlamaForCausalLM(config)


def hf_shapes(hidden, layers, heads, kv_heads, intermediate, vocab):
    """transformers LlamaForCausalLM's tensor names and shapes, in module order."""
    kv = hidden // heads * kv_heads
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}"
        shapes |= {f"{p}.self_attn.q_proj.weight": (hidden, hidden), f"{p}.self_attn.k_proj.weight": (kv, hidden),
                   f"{p}.self_attn.v_proj.weight": (kv, hidden), f"{p}.self_attn.o_proj.weight": (hidden, hidden),
                   f"{p}.mlp.gate_proj.weight": (intermediate, hidden), f"{p}.mlp.up_proj.weight": (intermediate, hidden),
                   f"{p}.mlp.down_proj.weight": (hidden, intermediate), f"{p}.input_layernorm.weight": (hidden,),
                   f"{p}.post_attention_layernorm.weight": (hidden,)}
    return shapes | {"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}


def write_hf_folder(folder, size, seed=0):
    """config.json, bf16 shards (keys sorted within a shard, as save_pretrained writes them) and the index."""
    from transformers import LlamaConfig

    folder.mkdir(parents=True, exist_ok=True)
    LlamaConfig(vocab_size=size["vocab"], hidden_size=size["hidden"], intermediate_size=size["intermediate"],
                num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                num_key_value_heads=size["kv_heads"], rms_norm_eps=1e-5, tie_word_embeddings=False,
                architectures=["LlamaForCausalLM"], torch_dtype="bfloat16").save_pretrained(folder)
    shards, current, current_bytes = [], [], 0
    for name, shape in hf_shapes(**size).items():
        nbytes = 2 * math.prod(shape)
        if current and current_bytes + nbytes > SHARD_BYTES:
            shards.append(current)
            current, current_bytes = [], 0
        current.append((name, shape))
        current_bytes += nbytes
    shards.append(current)
    rng, weight_map, total = np.random.default_rng(seed), {}, 0
    for index, shard in enumerate(shards):
        file = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        shard = sorted(shard)
        write_safetensors(folder / file, [(name, "bfloat16", shape) for name, shape in shard],
                          (_random(rng, name, shape) for name, shape in shard), metadata={"format": "pt"})
        weight_map |= {name: file for name, _ in shard}
        total += sum(2 * math.prod(shape) for _, shape in shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return total


def _random(rng, name, shape):
    if name.endswith("norm.weight"):
        return float32_to_bfloat16(np.ones(shape, np.float32))
    # Scaled like a trained model's (std about 1/sqrt(fan-in)) so activations stay finite through the layers.
    return float32_to_bfloat16(rng.standard_normal(shape, dtype=np.float32) * (0.5 / math.sqrt(shape[-1])))


def write_config(work, size, seq):
    kwargs = ", ".join(f"{key} = {value}" for key, value in {**size, "seq": seq}.items())
    path = work / "llm.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "llm"
        [torch]
        checkpoint = "hf"
        [mindspore]
        model = "{Path(__file__).resolve()}:mindformers_llama"
        kwargs = {{ {kwargs} }}
        [verify]
        inputs = [{{ shape = [1, {seq}], dtype = "int32", low = 1, high = {size["vocab"]} }}]
        outputs = {{ torch = ["logits"], mindspore = [0] }}
        [paths]
        maps = "maps"
        outputs = "outputs"
        """))
    return path


def memory_group(limit_bytes):
    """A cgroup v1 memory group under this process's own, limited to `limit_bytes` (None: no limit asked)."""
    if not limit_bytes:
        return None
    line = next(line for line in Path("/proc/self/cgroup").read_text().splitlines()
                if "memory" in line.split(":")[1].split(","))
    group = Path("/sys/fs/cgroup/memory") / line.split(":", 2)[2].lstrip("/") / f"llm_scale_{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
    return group


def run_stage(script, args, work, group=None):
    """Run one stage in a child (in `group`, a memory cgroup, if given); returns (exit code, seconds, peak RSS
    bytes, last lines of its output). A child over the group's limit is killed alone (exit -9)."""
    start = time.perf_counter()
    join = (lambda: (group / "cgroup.procs").write_text(str(os.getpid()))) if group else None
    with open(work / f"{Path(script).stem}.log", "w") as log:
        child = subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=work, stdout=log,
                                 stderr=subprocess.STDOUT, preexec_fn=join)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    tail = (work / f"{Path(script).stem}.log").read_text(errors="replace").strip().splitlines()[-3:]
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss * 1024, tail


def stage_args(script, config, cast):
    args = ["--config", str(config)]
    if script == "3_pth2ckpt.py":
        args += ["--format", "safetensors"] + (["--cast", cast] if cast else [])
    if script == "4_verify.py":
        help_text = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True)
        if "--stream" in help_text.stdout:
            args.append("--stream")  # block by block where this version of stage 4 can (issue 16, item 4)
    return args


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=PRESETS, default="tiny")
    parser.add_argument("--layers", type=int, help="override the preset's number of layers")
    parser.add_argument("--seq", type=int, default=16, help="tokens in the verify input")
    parser.add_argument("--work", type=Path, help="folder for the pair and its outputs (default: a temporary one)")
    parser.add_argument("--stages", default="1234", help="which stages to run, e.g. 12")
    parser.add_argument("--cast", default="float32", help="stage 3's --cast ('' keeps the file's bf16)")
    parser.add_argument("--limit-gb", type=float, help="run each stage under this memory limit (cgroup v1, root)")
    args = parser.parse_args(argv)
    size = dict(PRESETS[args.preset], **({"layers": args.layers} if args.layers else {}))
    work = args.work or Path(tempfile.mkdtemp(prefix=f"llm_{args.preset}_"))
    work.mkdir(parents=True, exist_ok=True)
    values = sum(math.prod(shape) for shape in hf_shapes(**size).values())
    layer = sum(math.prod(shape) for name, shape in hf_shapes(**size).items() if name.startswith("model.layers.0."))
    print(f"{args.preset}: {values / 1e9:.2f} B values ({2 * values / 2**30:.1f} GiB bf16, {4 * values / 2**30:.1f} "
          f"GiB float32 a side); one layer {4 * layer / 2**30:.2f} GiB float32; work folder {work}")
    if not (work / "hf" / "model.safetensors.index.json").exists():
        start = time.perf_counter()
        total = write_hf_folder(work / "hf", size)
        print(f"wrote {work / 'hf'}: {total / 2**30:.2f} GiB in {time.perf_counter() - start:.0f} s")
    config = write_config(work, size, args.seq)
    group = memory_group(int(args.limit_gb * 2**30) if args.limit_gb else None)
    if group:
        print(f"each stage runs under a {args.limit_gb:g} GiB memory limit ({group})")
    print(f"{'stage':<16}{'exit':>5}{'wall s':>9}{'peak RSS GiB':>14}  last line")
    try:
        for script in STAGES:
            if script[0] not in args.stages:
                continue
            code, seconds, peak, tail = run_stage(script, stage_args(script, config, args.cast), work, group)
            print(f"{script:<16}{code:>5}{seconds:>9.1f}{peak / 2**30:>14.2f}  {tail[-1][:100] if tail else ''}",
                  flush=True)
            if code not in (0, 1):
                print(f"  see {work / (Path(script).stem + '.log')}")
                return code
    finally:
        if group:
            group.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
