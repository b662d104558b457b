"""Choosing the tiles a tailor is trained on.

Tiles are ``patch`` x ``patch`` PAN windows of a :class:`~pansharp_dist.tiling.TileGrid`
without halo. A tile is eligible only if every one of its pixels is valid, so
nodata never enters the fit. Four strategies, all deterministic for a seed:

* ``random``: uniform among eligible tiles;
* ``grid``: stratified: the grid is cut into about k rectangular strata and one
  eligible tile is drawn from each (then random ones if strata are empty);
* ``farthest``: farthest-point sampling of the tile descriptors (seeded start);
* ``manifold``: k-means of the tile descriptors (k-means++ seeding), the
  eligible tile nearest each centre.

Descriptors are cheap: per band mean and standard deviation of each tile's MS
window and the standard deviation of its MS band mean (a texture proxy),
standardised over the scene. They are computed from the MS alone (1/ratio² of
the PAN's pixels); only the sampled tiles' PAN is ever read
(:func:`sample_valid_tiles`: a sampled tile whose PAN holds nodata is dropped
and another is drawn in its place).
"""

from __future__ import annotations

import math

import dask
import dask.array as da
import numpy as np

from ..errors import InvalidParameterError
from ..scene import Scene
from ..stats import valid_mask
from ..tiling import Tile, TileGrid

STRATEGIES = ("random", "grid", "farthest", "manifold")


def adaptation_grid(scene: Scene, patch: int) -> TileGrid:
    """The haloless grid of ``patch``-sized tiles the tailor samples from."""
    if patch % scene.ratio or patch < 4 * scene.ratio:
        raise InvalidParameterError(
            f"adaptation patch {patch} must be a multiple of the ratio and at least {4 * scene.ratio}"
        )
    return TileGrid(scene.shape[0], scene.shape[1], patch, 0, scene.ratio)


def tile_descriptors(scene: Scene, grid: TileGrid) -> tuple[np.ndarray, np.ndarray]:
    """``(eligible (T,) bool, descriptors (T, D) float64)`` for the tiles of ``grid``, in grid order.

    One blockwise pass over the MS (tiles as reshaped blocks); edge tiles smaller
    than the patch are not eligible.
    """
    m = grid.tile // scene.ratio
    _, h, w = scene.ms.shape
    rows, cols = h // m, w // m
    ms = scene.ms.data[:, : rows * m, : cols * m].astype(np.float64)
    blocks = ms.reshape(scene.bands, rows, m, cols, m)
    ok = da.isfinite(blocks)
    if scene.ms_nodata is not None:
        ok &= blocks != scene.ms_nodata
    mean, std, texture, valid = dask.compute(
        blocks.mean(axis=(2, 4)), blocks.std(axis=(2, 4)), blocks.mean(axis=0).std(axis=(1, 3)), ok.all(axis=(0, 2, 4))
    )
    grid_rows, grid_cols = grid.shape
    eligible: np.ndarray = np.zeros((grid_rows, grid_cols), bool)
    eligible[:rows, :cols] = valid
    desc: np.ndarray = np.zeros((grid_rows, grid_cols, 2 * scene.bands + 1))
    desc[:rows, :cols] = np.concatenate(
        [np.moveaxis(mean, 0, -1), np.moveaxis(std, 0, -1), texture[..., None]], axis=-1
    )
    eligible, desc = eligible.ravel(), desc.reshape(grid_rows * grid_cols, -1)
    if eligible.any():
        mu, sd = desc[eligible].mean(0), desc[eligible].std(0)
        desc = (desc - mu) / np.where(sd > 0, sd, 1.0)
    return eligible, desc


def sample_tiles(
    grid: TileGrid, eligible: np.ndarray, descriptors: np.ndarray, k: int, strategy: str = "manifold", seed: int = 0
) -> list[int]:
    """Indices (grid order, sorted) of ``k`` eligible tiles chosen by ``strategy``."""
    if strategy not in STRATEGIES:
        raise InvalidParameterError(f"unknown sampling strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    pool = np.flatnonzero(eligible)
    if pool.size == 0:
        raise InvalidParameterError(
            f"no {grid.tile} x {grid.tile} tile of the scene is free of nodata: use a smaller adaptation patch"
        )
    k = min(k, pool.size)
    rng = np.random.default_rng(seed)
    if strategy == "random":
        chosen = rng.choice(pool, k, replace=False)
    elif strategy == "grid":
        chosen = _stratified(grid, pool, k, rng)
    elif strategy == "farthest":
        chosen = _farthest(descriptors[pool], k, rng, pool)
    else:
        chosen = _manifold(descriptors[pool], k, rng, pool)
    return sorted(int(i) for i in chosen)


def read_tiles(scene: Scene, tiles: list[Tile]) -> tuple[np.ndarray, np.ndarray]:
    """``(pan (N, P, P), ms (N, B, P/r, P/r))`` float32 of the tiles' cores, in scene units."""
    r = scene.ratio
    pan = [scene.pan.data[t.core[0] : t.core[1], t.core[2] : t.core[3]] for t in tiles]
    ms = [scene.ms.data[:, t.core[0] // r : t.core[1] // r, t.core[2] // r : t.core[3] // r] for t in tiles]
    pan, ms = dask.compute(pan, ms)
    return np.stack(pan).astype(np.float32), np.stack(ms).astype(np.float32)


def sample_valid_tiles(
    scene: Scene, grid: TileGrid, k: int, strategy: str = "manifold", seed: int = 0
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Sample ``k`` tiles whose PAN and MS are entirely valid; returns their indices and their pixels."""
    eligible, desc = tile_descriptors(scene, grid)
    tiles = list(grid)
    while True:
        picked = sample_tiles(grid, eligible, desc, k, strategy, seed)
        pan, ms = read_tiles(scene, [tiles[i] for i in picked])
        ok = np.array(
            [
                valid_mask(p, m, scene.ratio, scene.pan_nodata, scene.ms_nodata)[0].all()
                for p, m in zip(pan.astype(scene.pan.dtype), ms.astype(scene.ms.dtype))
            ]
        )
        if ok.all():
            return picked, pan, ms
        eligible[np.asarray(picked)[~ok]] = False


def _stratified(grid: TileGrid, pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    rows, cols = grid.shape
    per_side = max(1, math.isqrt(k))
    sy, sx = math.ceil(rows / per_side), math.ceil(cols / per_side)
    strata: dict[tuple[int, int], list[int]] = {}
    for i in pool:
        ti, tj = divmod(int(i), cols)
        strata.setdefault((ti // sy, tj // sx), []).append(int(i))
    chosen = [int(rng.choice(members)) for _, members in sorted(strata.items())][:k]
    rest = np.setdiff1d(pool, chosen)
    extra: np.ndarray | list[int] = rng.choice(rest, k - len(chosen), replace=False) if k > len(chosen) else []
    return np.concatenate([np.asarray(chosen, int), np.asarray(extra, int)])


def _farthest(desc: np.ndarray, k: int, rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
    picked = [int(rng.integers(len(desc)))]
    dist = np.linalg.norm(desc - desc[picked[0]], axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(desc - desc[nxt], axis=1))
    return pool[picked]


def _manifold(desc: np.ndarray, k: int, rng: np.random.Generator, pool: np.ndarray, iters: int = 25) -> np.ndarray:
    centres = _lloyd(desc, _kmeans_plus_plus(desc, k, rng), iters)
    picked: list[int] = []
    for c in centres:  # nearest tile to each centre, each tile once
        order = np.argsort(((desc - c) ** 2).sum(-1))
        picked.append(int(next(i for i in order if i not in picked)))
    return pool[picked]


def _kmeans_plus_plus(desc: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` initial centres ``(k, D)`` by k-means++ seeding (one candidate per centre)."""
    centres = desc[[int(rng.integers(len(desc)))]]
    while len(centres) < k:
        d2 = np.min(((desc[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        probs = d2 / d2.sum() if d2.sum() > 0 else np.full(len(desc), 1 / len(desc))
        centres = np.vstack([centres, desc[rng.choice(len(desc), p=probs)]])
    return centres


def _lloyd(desc: np.ndarray, centres: np.ndarray, iters: int) -> np.ndarray:
    """``iters`` Lloyd iterations from ``centres`` ``(k, D)``; an empty cluster keeps its centre."""
    for _ in range(iters):
        label = np.argmin(((desc[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        centres = np.stack(
            [desc[label == j].mean(0) if np.any(label == j) else centres[j] for j in range(len(centres))]
        )
    return centres
