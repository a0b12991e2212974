"""One simulated inspection frame with its ground truth, and the writer of a dataset folder.

    edge-xai simulate --out data/train --n 6000 --seed 1

Sample i of seed s draws from `np.random.default_rng([s, i])`, so a dataset is reproducible piece by
piece and sample i is the same whatever `n` is.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from edge.data.loader import SIMULATOR
from edge.errors import InvalidInput
from edge.output_folder import staged_output
from edge.sim import defects, geometry, optics, thermal

CHANNELS = ("thermal", "phase", "intensity")
DATASET_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SimConfig:
    size: int = 128                     # px; the models' default input
    pitch_mm: tuple[float, float] = (0.06, 0.12)  # pixel pitch range, mm/px, drawn per sample
    emissivity_normal: float = 0.9      # the coating; the camera is calibrated for it
    env_temperature_k: float = 293.15   # reflected surroundings
    # The parts' true temperature level, drawn per sample. Parts down to the surroundings' temperature
    # (e.g. 293.15,380) are what a thermal model must have seen before its IG may start from a part at
    # ambient, where no reading needs correcting (edge.explain.baselines, "ambient").
    temperature_k: tuple[float, float] = (330.0, 380.0)
    netd_k: float = 0.03                # camera noise (cooled MWIR class)
    phase_rad_per_slope: float = 10.0   # deflectometer sensitivity: fringe orders up to about ±3
    phase_noise_rad: float = 0.03
    intensity_noise: float = 0.01
    # Spurious artifact for audit experiments: a sensor mark whose position encodes the class, present
    # on `artifact_rate` of the defective samples. Off by default.
    artifact: bool = False
    artifact_rate: float = 0.9
    classes: tuple[str, ...] = field(default=defects.CLASSES)
    # The part shapes drawn from (uniformly). A subset, with another coating or pixel pitch, makes frames of
    # another set-up: what the review flag's "unlike the training data" is audited on (`edge-xai audit --ood`).
    geometries: tuple[str, ...] = field(default=geometry.GEOMETRIES)

    def __post_init__(self):
        if not 0 < self.emissivity_normal <= 1:
            raise InvalidInput(f"emissivity_normal {self.emissivity_normal}: expected a value in (0, 1]")
        lo, hi = self.pitch_mm
        if not 0 < lo <= hi:
            raise InvalidInput(f"pitch_mm {self.pitch_mm}: expected 0 < low <= high (mm per pixel)")
        lo, hi = self.temperature_k
        if not 0 < lo <= hi:
            raise InvalidInput(f"temperature_k {self.temperature_k}: expected 0 < low <= high (kelvin)")
        if not self.geometries or set(self.geometries) - set(geometry.GEOMETRIES):
            raise InvalidInput(f"geometries {', '.join(self.geometries) or '(none)'}: expected one or more of "
                               f"{', '.join(geometry.GEOMETRIES)}")
        if not 0 <= self.artifact_rate <= 1:
            raise InvalidInput(f"artifact_rate {self.artifact_rate}: expected a fraction in [0, 1]")


def _artifact_mark(size: int, class_index: int) -> tuple[slice, slice]:
    """A 5x5 mark along the top edge, its position set by the class (so it can stand in for it)."""
    x0 = 3 + 9 * class_index
    return slice(2, 7), slice(x0, x0 + 5)


def simulate_sample(index: int, seed: int, cfg: SimConfig = SimConfig(),
                    defect_class: str | None = None, geometry_type: str | None = None,
                    defect_channels: Iterable[str] | None = None) -> dict:
    """Simulate one frame. Returns a dict of arrays and scalars (see README, dataset format).

    defect_channels: the sensors that see the defect; the others are rendered from the same part without it
    (same geometry, temperature field and noise draws). For testing per-sensor evidence: a defect visible
    in one channel only, with nothing left of it in the others (inpainting a defect away leaves traces the
    classifier reads, and misses a subsurface defect's thermal halo). None: every sensor sees it."""
    rng = np.random.default_rng([seed, index])
    size = cfg.size
    cls = defect_class or cfg.classes[index % len(cfg.classes)]
    geom = geometry_type or str(rng.choice(cfg.geometries))
    pitch = float(rng.uniform(*cfg.pitch_mm))
    seen = set(CHANNELS if defect_channels is None else defect_channels)
    if seen - set(CHANNELS):
        raise InvalidInput(f"defect_channels {sorted(seen - set(CHANNELS))}: the channels are {', '.join(CHANNELS)}")

    base_height = geometry.height_map(geom, size, pitch, rng)
    effect = defects.defect_effect(cls, size, pitch, rng)
    height = base_height + effect.height_mm
    sx, sy = geometry.slopes(height, pitch)

    # Thermal: emissivity from geometry (including the defect's own shape), then contamination.
    eps_geometry = thermal.cavity_emissivity(
        thermal.directional_emissivity(sx, sy, cfg.emissivity_normal), geometry.concavity(height, pitch))
    t_base = thermal.true_temperature(size, rng, cfg.temperature_k)
    t_true = t_base + effect.temperature_k
    t_geometry = thermal.apparent_temperature(t_true, eps_geometry, cfg.emissivity_normal, cfg.env_temperature_k)
    t_app = thermal.apparent_temperature(t_true, eps_geometry * effect.emissivity_factor,
                                         cfg.emissivity_normal, cfg.env_temperature_k)
    t_noise = rng.normal(0, cfg.netd_k, t_app.shape).astype(np.float32)
    t_app = t_app + t_noise

    # Deflectometry: the noise is part of the measured phase, so wrapped and unwrapped differ by 2*pi*k.
    p_noise = rng.normal(0, cfg.phase_noise_rad, sx.shape).astype(np.float32)
    unwrapped = cfg.phase_rad_per_slope * sx + p_noise
    wrapped = optics.wrap_phase(unwrapped)

    albedo_base = 0.55 + 0.05 * rng.standard_normal()
    albedo = albedo_base * effect.reflectance_factor
    intensity = optics.reflectance_image(sx, sy, albedo)
    i_noise = rng.normal(0, cfg.intensity_noise, intensity.shape)
    intensity = np.clip(intensity + i_noise, 0, 1).astype(np.float32)

    if seen != set(CHANNELS):
        # the same part without the defect, for the sensors that must not see it
        sx0, sy0 = geometry.slopes(base_height, pitch)
        if "thermal" not in seen:
            eps0 = thermal.cavity_emissivity(thermal.directional_emissivity(sx0, sy0, cfg.emissivity_normal),
                                             geometry.concavity(base_height, pitch))
            t_app = thermal.apparent_temperature(t_base, eps0, cfg.emissivity_normal, cfg.env_temperature_k) + t_noise
        if "phase" not in seen:
            wrapped = optics.wrap_phase(cfg.phase_rad_per_slope * sx0 + p_noise)
        if "intensity" not in seen:
            intensity = np.clip(optics.reflectance_image(sx0, sy0, albedo_base) + i_noise, 0, 1).astype(np.float32)

    artifact = bool(cfg.artifact and cls != defects.OK_CLASS and rng.uniform() < cfg.artifact_rate)
    if artifact:
        rows, cols = _artifact_mark(size, cfg.classes.index(cls))
        intensity[rows, cols] = 1.0
        t_app[rows, cols] += 4.0

    return {
        "thermal": t_app.astype(np.float32),
        "phase": wrapped,
        "intensity": intensity,
        "channel_names": np.array(CHANNELS),
        "mask": effect.mask.astype(np.uint8),
        "true_temperature": t_true.astype(np.float32),
        "unwrapped_phase": unwrapped.astype(np.float32),
        # Where geometry alone makes apparent != true, in kelvin (zero on a flat, defect-free part).
        "physics_importance": np.abs(t_geometry - t_true).astype(np.float32),
        "height": height.astype(np.float32),
        "edge_map": geometry.edge_map(base_height, pitch),
        "geometry": np.array(geom),
        "label": np.array(cls),
        "pixel_pitch_mm": np.float32(pitch),
        "artifact": np.array(artifact),
    }


def write_dataset(out: Path, n: int, seed: int, cfg: SimConfig = SimConfig(),
                  indices: Iterable[int] | None = None, progress: bool = True) -> Path:
    """Write `n` samples as DIR/<class>/<stem>.npz plus DIR/dataset.json (the recipe)."""
    from tqdm import tqdm

    out = Path(out)
    # written beside OUT and renamed when complete: a run stopped halfway leaves no set without its recipe
    with staged_output(out) as work:
        for cls in cfg.classes:
            (work / cls).mkdir(parents=True, exist_ok=True)
        for i in tqdm(indices if indices is not None else range(n), total=n, desc="simulate",
                      unit="sample", disable=not progress):
            s = simulate_sample(i, seed, cfg)
            np.savez(work / str(s["label"]) / f"s{seed}_{i:06d}.npz", **s)
        recipe = {"format_version": DATASET_FORMAT_VERSION, "generator": SIMULATOR,
                  "n": n, "seed": seed, "config": asdict(cfg)}
        (work / "dataset.json").write_text(json.dumps(recipe, indent=2))
    return out
