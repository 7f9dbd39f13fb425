"""Stage 2's matcher on a 600-tensor model: time beyond imports, and how many entries it got right.

The pair is synthetic but realistic: a BERT encoder with Hugging Face names on the PyTorch side and the
MindSpore model zoo's names on the other (structurally different: query -> attention.attention.query_layer,
LayerNorm.weight -> layernorm.gamma), so every tensor goes through the structural pass, none through exact
names. Only inventories are built (no framework import), as stage 2 itself reads stage 1's CSVs.

    .venv/bin/python benchmarks/map_speed.py --layers 37
    .venv/bin/python benchmarks/map_speed.py --tensors 200000    # stage 2 whole on a 200,000-tensor inventory

With --probe-layers N it times stage 2 with the numeric probe instead (pt2ms/mapping/probe.py): tests/zoo_llm_pairs.py's
Qwen2 (separate q/k/v with biases, gate/up) against mindformers 2.x's LlamaForCausalLM with qkv_concat (w_qkv
interleaved per key/value group, w_gate_hidden row by row), N decoder layers, stages 1 and 2 through the
scripts' main() as a user runs them; wall time of stage 2 and the process's peak RSS (both frameworks loaded).

    .venv/bin/python benchmarks/map_speed.py --probe-layers 24
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pt2ms.config import load_config  # noqa: E402
from pt2ms.formats.inventory import TensorInfo, write_inventory  # noqa: E402
from pt2ms.mapping.matching import match  # noqa: E402
from pt2ms.stages.build_map import build_map, split_ignored, to_value  # noqa: E402


def bert_pair(layers, hidden=64, intermediate=256):
    """(MindSpore rows, torch rows, reference map) for a BERT encoder of `layers` layers."""
    torch_rows, ms_rows, reference = [], [], {}

    def add(ms_name, torch_name, shape, ms_type, torch_type):
        torch_rows.append(TensorInfo(torch_name, shape, "float32", torch_type))
        ms_rows.append(TensorInfo(ms_name, shape, "float32", ms_type, ms_name))
        reference[ms_name] = torch_name

    add("bert_embedding_lookup.embedding_table", "embeddings.word_embeddings.weight", (1000, hidden), "Embedding", "Embedding")
    add("embedding_postprocessor.full_position_embedding.embedding_table", "embeddings.position_embeddings.weight",
        (512, hidden), "Embedding", "Embedding")
    add("embedding_postprocessor.layernorm.gamma", "embeddings.LayerNorm.weight", (hidden,), "LayerNorm", "LayerNorm")
    add("embedding_postprocessor.layernorm.beta", "embeddings.LayerNorm.bias", (hidden,), "LayerNorm", "LayerNorm")
    for i in range(layers):
        ms, pt = f"bert_encoder.layers.{i}", f"encoder.layer.{i}"
        for ms_part, pt_part in (("query_layer", "query"), ("key_layer", "key"), ("value_layer", "value")):
            add(f"{ms}.attention.attention.{ms_part}.weight", f"{pt}.attention.self.{pt_part}.weight", (hidden, hidden), "Dense", "Linear")
            add(f"{ms}.attention.attention.{ms_part}.bias", f"{pt}.attention.self.{pt_part}.bias", (hidden,), "Dense", "Linear")
        add(f"{ms}.attention.output.dense.weight", f"{pt}.attention.output.dense.weight", (hidden, hidden), "Dense", "Linear")
        add(f"{ms}.attention.output.dense.bias", f"{pt}.attention.output.dense.bias", (hidden,), "Dense", "Linear")
        add(f"{ms}.attention.output.layernorm.gamma", f"{pt}.attention.output.LayerNorm.weight", (hidden,), "LayerNorm", "LayerNorm")
        add(f"{ms}.attention.output.layernorm.beta", f"{pt}.attention.output.LayerNorm.bias", (hidden,), "LayerNorm", "LayerNorm")
        add(f"{ms}.intermediate.weight", f"{pt}.intermediate.dense.weight", (intermediate, hidden), "Dense", "Linear")
        add(f"{ms}.intermediate.bias", f"{pt}.intermediate.dense.bias", (intermediate,), "Dense", "Linear")
        add(f"{ms}.output.dense.weight", f"{pt}.output.dense.weight", (hidden, intermediate), "Dense", "Linear")
        add(f"{ms}.output.dense.bias", f"{pt}.output.dense.bias", (hidden,), "Dense", "Linear")
        add(f"{ms}.output.layernorm.gamma", f"{pt}.output.LayerNorm.weight", (hidden,), "LayerNorm", "LayerNorm")
        add(f"{ms}.output.layernorm.beta", f"{pt}.output.LayerNorm.bias", (hidden,), "LayerNorm", "LayerNorm")
    add("dense.weight", "pooler.dense.weight", (hidden, hidden), "Dense", "Linear")
    add("dense.bias", "pooler.dense.bias", (hidden,), "Dense", "Linear")
    return ms_rows, torch_rows, reference


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def large(tensors):
    """Stage 2 whole (read both CSVs, match, write the map) on a BERT pair of about `tensors` tensors."""
    ms_rows, torch_rows, reference = bert_pair(max(1, (tensors - 6) // 16))
    with tempfile.TemporaryDirectory() as work:
        config = _bench_config(Path(work), ms_rows, torch_rows)
        before = peak_rss_mb()
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = build_map(config)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    got = {item.ms_name: to_value(item) for item in summary["matches"]}
    right = sum(got.get(name) == value for name, value in reference.items())
    print(f"tensors: {len(ms_rows):,} MindSpore, {len(torch_rows):,} PyTorch")
    print(f"stage 2 whole: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak_rss_mb():,.0f} MB "
          f"({before:,.0f} MB before it ran)")
    print(f"right: {right:,}/{len(reference):,}")


def _bench_config(work, ms_rows, torch_rows):
    config_path = work / "bench.toml"
    config_path.write_text('name = "bench"\n[torch]\ncheckpoint = "none.pth"\n[mindspore]\ntemplate = "none.ckpt"\n'
                           '[paths]\nmaps = "maps"\noutputs = "outputs"\n')
    config = load_config(config_path)
    write_inventory(ms_rows, config.output_dir / "ms_params", "MindSpore")
    write_inventory(torch_rows, config.output_dir / "torch_params", "PyTorch")
    return config


def probe_case(layers):
    """Stage 2 with probes on a `layers`-layer Qwen2 / mindformers 2.x pair; prints its summary, wall and peak RSS."""
    import resource

    import torch

    from tests import zoo_llm_pairs
    from tests.conftest import run_script, write_config
    from tests.mapping.test_zoo_pairs import wrong_entries
    from tests.probe_pairs import qwen2_torch, seeded_state

    zoo_llm_pairs.LAYERS = layers  # the factories read it when they build
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        torch.save(seeded_state(qwen2_torch()), work / "qwen2.pth")
        config = write_config(work, name="qwen2", torch_model="tests.probe_pairs:qwen2_torch",
                              ms_model="tests.probe_pairs:qwen2_mindformers", checkpoint="qwen2.pth")
        config.write_text(config.read_text().replace(
            "inputs = [[2, 3, 8, 8]]", 'inputs = [{ shape = [2, 6], dtype = "int64", high = 20 }]'))
        assert run_script("1_show.py", "--config", str(config))[0] == 0
        started = time.perf_counter()
        code, stdout, _ = run_script("2_build_map.py", "--config", str(config))
        wall = time.perf_counter() - started
        got = json.loads((work / "maps" / "qwen2.json").read_text())["map"]
    pair = zoo_llm_pairs.qwen2_hf_vs_mindformers_qkv_concat_pair()
    wrong = wrong_entries(got, pair)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(next(line for line in stdout.splitlines() if line.startswith("mapped")))
    print(next((line for line in stdout.splitlines() if line.startswith("probe:")), "probe: not run"))
    print(f"layers {layers}: stage 2 with probes {wall:.1f} s wall, peak RSS {peak:.0f} MB (whole process); "
          f"right {len(pair.reference) - len(wrong)}/{len(pair.reference)}")
    return code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=37, help="encoder layers (37 -> 598 tensors)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tensors", type=int, default=0,
                        help="instead: one stage-2 run on about this many tensors (wall time, peak memory)")
    parser.add_argument("--probe-layers", type=int, help="time stage 2 with probes on a transformer of this depth")
    args = parser.parse_args()
    if args.tensors:
        return large(args.tensors)
    if args.probe_layers:
        return probe_case(args.probe_layers)
    ms_rows, torch_rows, reference = bert_pair(args.layers)
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        ms_kept, torch_kept, _ = split_ignored(ms_rows, torch_rows)
        matches = match(ms_kept, torch_kept)
        timings.append(time.perf_counter() - started)
    got = {item.ms_name: to_value(item) for item in matches}
    right = sum(got.get(name) == value for name, value in reference.items())
    print(f"tensors: {len(ms_rows)} MindSpore, {len(torch_rows)} PyTorch")
    print(f"matcher: best {min(timings):.3f} s, worst {max(timings):.3f} s over {args.repeat} runs (imports excluded)")
    print(f"right: {right}/{len(reference)}")
    with tempfile.TemporaryDirectory() as work:
        config = _bench_config(Path(work), ms_rows, torch_rows)
        started = time.perf_counter()
        build_map(config)
        print(f"stage 2 whole (read CSVs, match, write the map): {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    raise SystemExit(main())
