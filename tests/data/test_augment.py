"""Clip augmentation: the same transform on every frame, never in place, deterministic by seed."""

import numpy as np
import pytest

from drsta.data.augment import AugmentSpec, augment_clip


def random_clip(rng, frames=4, height=32, width=16):
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.stack([base] * frames)  # identical frames: any per-frame difference is the augmentation's


ONLY_FLIP, ONLY_CROP, ONLY_ERASE = (
    AugmentSpec(1, 0, erase_p=0),
    AugmentSpec(0, 1, erase_p=0),
    AugmentSpec(0, 0, erase_p=1),
)


@pytest.mark.parametrize("spec", [ONLY_FLIP, ONLY_CROP, ONLY_ERASE, AugmentSpec()])
def test_every_frame_gets_the_same_transform(rng, spec):
    clip = random_clip(rng)
    for seed in range(10):
        out = augment_clip(clip, np.random.default_rng(seed), spec)
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert all(np.array_equal(out[0], frame) for frame in out[1:])


def test_flip_mirrors_and_input_is_untouched(rng):
    clip = random_clip(rng)
    before = clip.copy()
    out = augment_clip(clip, np.random.default_rng(0), AugmentSpec(flip_p=1, crop_p=0, erase_p=0))
    np.testing.assert_array_equal(out, before[:, :, ::-1])
    np.testing.assert_array_equal(clip, before)


def test_erasing_changes_one_rectangle(rng):
    clip = np.zeros((2, 32, 16, 3), np.uint8)
    out = augment_clip(clip, np.random.default_rng(1), AugmentSpec(flip_p=0, crop_p=0, erase_p=1))
    rows, cols = np.nonzero(out[0].any(axis=-1))
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert 0.02 * 512 * 0.5 <= area <= 0.2 * 512 * 1.5


def test_same_seed_same_output(rng):
    clip = random_clip(rng)
    a = augment_clip(clip, np.random.default_rng(5), AugmentSpec())
    b = augment_clip(clip, np.random.default_rng(5), AugmentSpec())
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("kwargs", "match"), [({"flip_p": 2}, "flip_p"), ({"crop_area": (0.0, 1.0)}, "crop_area")])
def test_bad_spec_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentSpec(**kwargs)
