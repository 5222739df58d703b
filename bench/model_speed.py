"""Episodes per second, peak memory and achieved GFLOP/s of LERENet, against a naive baseline.

    python bench/model_speed.py [--device cpu|cuda] [--seconds 3] [--size 200]

For each backbone and K ∈ {1, 5} at B = 2, it times
- inference: ``naive`` (all backbone levels computed as in the authors' code, eager fp32
  NCHW under ``no_grad``) vs ``optimized`` (only the stride-4 levels, Conv+BN folded,
  channels-last, ``inference_mode``, autocast on CUDA) and, where the CPU has AVX512-BF16 or on
  CUDA, ``optimized+bf16``;
- a training step (forward, cross-entropy, backward, SGD): ``naive`` vs ``optimized``
  (stride-4 levels only, channels-last, AMP on CUDA);
and a 2048² fp32 matrix multiply in the same run, the machine's reachable GFLOP/s.
Each measurement runs in a fresh subprocess so its peak memory (RSS on CPU, allocator peak on
CUDA) is its own. Results: ``bench/results/model_speed_<device>.json`` and the table in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BACKBONES = ("resnet50", "vgg16_bn", "efficientnet_lite0")


def _timed(step, seconds: float) -> tuple[float, int]:
    """Call ``step`` after one warm-up until ``seconds`` pass (≥ 3 calls); mean seconds/call."""
    import torch

    step()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    sync()
    return (time.perf_counter() - start) / calls, calls


def measure_one(spec: dict) -> dict:
    """One (backbone, shots, mode, variant) measurement, in this process."""
    import warnings

    import torch

    from lerenet.config.schema import ModelConfig
    from lerenet.model.build import build_model
    from lerenet.model.complexity import count_flops, dummy_episode

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    naive = spec["variant"] == "naive"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = build_model(
            ModelConfig(backbone=spec["backbone"], weights="random"), full_depth=naive
        )
    cpu_episode = dummy_episode(spec["batch"], spec["shots"], spec["size"])
    episode = tuple(t.to(device) for t in cpu_episode)
    model = model.to(device)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    step = _step_fn(spec, model, episode, device)
    sec, calls = _timed(step, spec["seconds"])
    if use_cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    # FLOPs after the timed loop so the counter's activations do not mask the loop's peak.
    lean, _ = build_model(
        ModelConfig(backbone=spec["backbone"], weights="random"), load_weights=False
    )
    flops = count_flops(lean.eval(), cpu_episode)[""]  # useful work, same for every variant
    work = flops * (3 if spec["mode"] == "train" else 1)  # backward ≈ 2× forward
    return {
        **spec,
        "sec_per_batch": sec,
        "calls": calls,
        "episodes_per_s": spec["batch"] / sec,
        "gflops_per_batch": work / 1e9,
        "achieved_gflops": work / sec / 1e9,
        "peak_extra_mb": round(peak_mb, 1),
    }


def _step_fn(spec: dict, model, episode: tuple, device) -> Callable[[], None]:
    """One timed call of the measured mode and variant: an inference forward (naive, or the
    optimised path with bf16 on CPU / AMP on CUDA) or a training step (SGD, AMP when
    optimised)."""
    import torch

    from lerenet.evaluation.inference import autocast_dtype, optimize_for_inference, predict_logits

    naive, use_cuda = spec["variant"] == "naive", device.type == "cuda"
    if spec["mode"] == "inference":
        if naive:
            model.eval()

            def step() -> None:
                with torch.no_grad():
                    model(*episode)
        else:
            fast = optimize_for_inference(model, device)
            bf16 = spec["variant"] == "optimized+bf16"

            def step() -> None:
                if bf16 and not use_cuda:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        predict_logits(fast, *episode)
                else:
                    predict_logits(fast, *episode, amp=use_cuda)
    else:
        model.train()
        if not naive:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        target = torch.randint(0, 2, (spec["batch"], spec["size"], spec["size"]), device=device)
        amp_dtype = autocast_dtype(device) if not naive else None
        scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                loss = torch.nn.functional.cross_entropy(model(*episode), target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    return step


def matmul_gflops(device: str, seconds: float, n: int = 2048) -> float:
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sec, _ = _timed(lambda: a @ b, seconds)
    return 2 * n**3 / sec / 1e9


def run_in_subprocess(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict], matmul: float, device_name: str) -> str:
    lines = [
        f"Device: {device_name}; matmul 2048² fp32: **{matmul:.0f} GFLOP/s**. "
        "B = 2 episodes per batch, 200×200. `eps/s` = episodes per second; `×naive` = speed-up "
        "over the naive baseline in the same run; `%mm` = achieved GFLOP/s (useful FLOPs only) "
        "as a share of the matmul's; memory = peak extra memory during the timed loop.",
        "",
        "| backbone | K | mode | variant | eps/s | ×naive | GFLOP/s | %mm | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = {
        (r["backbone"], r["shots"], r["mode"]): r["episodes_per_s"]
        for r in results
        if r["variant"] == "naive"
    }
    for r in results:
        ratio = r["episodes_per_s"] / base[(r["backbone"], r["shots"], r["mode"])]
        lines.append(
            f"| {r['backbone']} | {r['shots']} | {r['mode']} | {r['variant']} | "
            f"{r['episodes_per_s']:.2f} | {ratio:.2f} | {r['achieved_gflops']:.1f} | "
            f"{100 * r['achieved_gflops'] / matmul:.0f}% | {r['peak_extra_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per cell")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(json.loads(args.one))))
        return

    import torch

    bf16 = (args.device == "cuda") or "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    device_name = (
        torch.cuda.get_device_name(0)
        if args.device == "cuda"
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    results = []
    for backbone in args.backbones:
        for shots in (1, 5):
            for mode, variants in (
                (
                    "inference",
                    ["naive", "optimized"]
                    + (["optimized+bf16"] if bf16 and args.device == "cpu" else []),
                ),
                ("train", ["naive", "optimized"]),
            ):
                for variant in variants:
                    spec = {
                        "backbone": backbone,
                        "shots": shots,
                        "mode": mode,
                        "variant": variant,
                        "batch": 2,
                        "size": args.size,
                        "device": args.device,
                        "seconds": args.seconds,
                    }
                    res = run_in_subprocess(spec)
                    print(
                        f"{backbone:20s} K={shots} {mode:9s} {variant:15s} "
                        f"{res['episodes_per_s']:7.2f} eps/s  {res['achieved_gflops']:6.1f} "
                        f"GFLOP/s  +{res['peak_extra_mb']:.0f} MB",
                        flush=True,
                    )
                    results.append(res)
    matmul = matmul_gflops(args.device, args.seconds)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"model_speed_{args.device}.json"
    out.write_text(
        json.dumps(
            {
                "device": device_name,
                "matmul_gflops": matmul,
                "torch": torch.__version__,
                "results": results,
            },
            indent=2,
        )
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    replace_section(f"model_speed_{args.device}", table(results, matmul, device_name))
    print(f"matmul {matmul:.0f} GFLOP/s; wrote {out} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
