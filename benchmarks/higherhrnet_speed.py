"""HigherHRNet speed: network forward (images/s) and associative-embedding decoding (detections/s).

Randomly initialized HigherHRNet-W32 (no weights needed) with mmpose-scale weights (`fake_mmpose_checkpoint`,
so activations stay in a realistic range) at 512x512, batch 1 and 8, with and without the flip test (which doubles
the network work); and the decoder alone on synthetic heatmaps holding a known number of people.

    .venv/bin/python benchmarks/higherhrnet_speed.py --repeats 3 --device cpu
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from posebench.pose import ae_decode
from posebench.pose.higherhrnet import fake_mmpose_checkpoint, higherhrnet_w32


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN / cuDNN plans)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def synthetic_maps(people: int, size: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 17, size, size) Gaussian heatmaps of `people` random skeletons and (1, 17, size, size, 2) tags."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size]
    hm = np.zeros((17, size, size), np.float32)
    tags = np.zeros((17, size, size, 2), np.float32)
    for p in range(people):
        centre = rng.uniform(0.15 * size, 0.85 * size, size=2)
        for j in range(17):
            x, y = centre + rng.normal(0, 0.08 * size, size=2)
            g = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 8.0).astype(np.float32)
            near = g > hm[j]
            hm[j] = np.maximum(hm[j], g)
            tags[j][near] = 2.0 * p
    return torch.from_numpy(hm)[None], torch.from_numpy(tags)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--people", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = higherhrnet_w32()
    model.load_mmpose_state_dict(fake_mmpose_checkpoint(32))
    model = model.to(args.device).eval()
    print(f"HigherHRNet-W32, {args.size}x{args.size}, device {args.device}, threads {torch.get_num_threads()}")
    for batch in (1, 8):
        x = torch.rand(batch, 3, args.size, args.size, device=args.device)
        with torch.no_grad():
            t = _time(lambda x=x: model.forward_raw(x), args.repeats)
            tf = _time(lambda x=x: ae_decode.flip_test(model.forward_raw, x, model.decode_cfg), args.repeats)
        print(f"  batch {batch}: forward {batch / t:7.2f} img/s ({t * 1e3:8.1f} ms/batch); "
              f"with flip test + aggregation {batch / tf:7.2f} img/s ({tf * 1e3:8.1f} ms/batch)")

    # decoding alone, at the UDP config's 1/2 resolution (256) and W32's project2image resolution (512)
    for size, cfg in ((args.size // 2, ae_decode.W48_UDP), (args.size, ae_decode.W32_COCO)):
        hm, tags = synthetic_maps(args.people, size)
        found = ae_decode.decode(hm, tags, cfg, input_size=(args.size, args.size))[0]
        t = _time(lambda hm=hm, tags=tags, cfg=cfg: ae_decode.decode(hm, tags, cfg, (args.size, args.size)),
                  args.repeats)
        label = "udp" if cfg.use_udp else "non-udp"
        print(f"  decode {label} {size}x{size}, {args.people} people ({len(found)} groups): {t * 1e3:7.1f} ms/image, "
              f"{len(found) / t:7.1f} detections/s")


if __name__ == "__main__":
    main()
