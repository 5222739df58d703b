"""The best-pixel prior (``priors.max_cosine``) against its first version, in the same run.

    python bench/prior_speed.py

The first version computed the whole query × support cosine matrix and masked a copy of it per
side (kept below as ``masked_copies``, the baseline); the current one carries the side as an
extra channel of the product and goes through the query positions in cache-sized blocks. Both
run on the same random stage maps (EfficientNet-Lite0's s4: C = 24, 80×80 at 320×320 input)
and must give the same maxima; then the whole improved-recipe forward at 320×320 with each.
Best of 3, two threads. Results: bench/results/prior_speed.json and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lerenet.model import priors

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ((8, 5), (1, 5), (2, 1))  # (batch, shots): eval batch, one episode, a training step


def masked_copies(query, supports, fg, bg):
    """The first ``max_cosine``: one product, a masked copy of it per side."""
    b, c, h, w = query.shape
    q = F.normalize(query.flatten(2), dim=1, eps=1e-7)
    s = F.normalize(supports.flatten(3), dim=2, eps=1e-7).transpose(1, 2).flatten(2)
    cos = torch.bmm(q.transpose(1, 2), s)
    maps = []
    for weight in (bg, fg):
        keep = priors.side_pixels(weight).unsqueeze(1)
        maps.append(cos.masked_fill(~keep, -1.0).amax(dim=2).view(b, 1, h, w))
    return torch.cat(maps, dim=1)


def best_of(fn, *args, repeats: int = 3) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - began)
    return min(times)


def model_rows() -> list[dict]:
    """The improved recipe's whole forward, one episode at 320×320, with each version."""
    from lerenet.config.schema import load_params
    from lerenet.model.build import build_model

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    model = build_model(params.model)[0].eval()
    current = priors.max_cosine
    rows = []
    for shots in (1, 5):
        query, supports = torch.randn(1, 3, 320, 320), torch.randn(1, shots, 3, 320, 320)
        masks = (torch.rand(1, shots, 320, 320) > 0.9).long()
        timings = {}
        for name, fn in (("before", masked_copies), ("after", current)):
            priors.max_cosine = fn  # matching_maps looks it up in the module
            with torch.inference_mode():
                timings[name] = best_of(model, query, supports, masks)
        priors.max_cosine = current
        rows.append({"case": f"improved forward, K = {shots}, 320×320", **timings})
    return rows


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rows = []
    for batch, shots in CASES:
        query, supports = torch.randn(batch, 24, 80, 80), torch.randn(batch, shots, 24, 80, 80)
        fg = (torch.rand(batch, shots, 1, 80, 80) > 0.9).float()
        bg = 1 - fg
        torch.testing.assert_close(
            priors.max_cosine(query, supports, fg, bg), masked_copies(query, supports, fg, bg)
        )
        rows.append(
            {
                "case": f"max_cosine, B = {batch}, K = {shots}, 80×80",
                "before": best_of(masked_copies, query, supports, fg, bg),
                "after": best_of(priors.max_cosine, query, supports, fg, bg),
            }
        )
    rows += model_rows()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prior_speed.json").write_text(json.dumps({"threads": 2, "rows": rows}, indent=2))
    lines = [
        "`python bench/prior_speed.py` — best of 3, 2 threads; before = one product and a "
        "masked copy per side (the first version), after = `priors.max_cosine`.",
        "",
        "| case | before | after | speed-up |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['before']:.3f} s | {row['after']:.3f} s "
            f"| {row['before'] / row['after']:.1f}× |"
        )
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    replace_section("prior_speed", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
