"""A deliberately broken candidate for showing the evaluate gate at work (scripts/demo, tests).

    python -m sovforge.demo.broken runs/demo/compress/merged runs/demo/broken [--scale 0.5]

Copies an HF checkpoint and adds seeded Gaussian noise to every weight; the copy has no manifest (new content,
new id), so `sovforge evaluate` scores it as a plain local checkpoint — and the gate must refuse it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def noisy_copy(model: Path, out: Path, scale: float = 0.5, seed: int = 0) -> Path:
    """`model` copied to `out` with N(0, scale²) added to every tensor of every safetensors file."""
    import torch
    from safetensors.torch import load_file, save_file

    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another directory")
    shutil.copytree(model, out)
    (out / "manifest.json").unlink(missing_ok=True)
    for path in sorted(out.glob("*.safetensors")):
        generator = torch.Generator().manual_seed(seed)
        tensors = {k: v + torch.randn(v.shape, generator=generator, dtype=v.dtype) * scale
                   for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="HF checkpoint directory (safetensors)")
    parser.add_argument("out", type=Path, help="new directory for the noisy copy")
    parser.add_argument("--scale", type=float, default=0.5, help="noise standard deviation")
    args = parser.parse_args(argv)
    print(noisy_copy(args.model, args.out, args.scale))


if __name__ == "__main__":
    main()
