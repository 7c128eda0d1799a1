"""Contract tests over every model variant, parity with the equations, bad input, and the export round trip."""

import subprocess
import sys

import pytest
import torch
import torchvision

from drsta.config import ModelConfig
from drsta.model import VARIANTS, build_model, drsta_tiny, functional
from drsta.model.backbone import ResNetTrunk
from drsta.model.export import OUTPUT_KEYS, export_model, load_exported, save_exported

SMALL_INPUT = (64, 32)  # (H, W): a 2×1 cell grid, enough for every code path on the CPU


def clips_for(model, batch=2, size=SMALL_INPUT):
    return torch.rand(batch, model.num_frames, 3, *size)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_contract_shapes_finite_and_every_parameter_learns(variant):
    model = VARIANTS[variant](num_classes=5, num_frames=3, num_attention_models=2).train()
    clips = clips_for(model, size=(96, 64))
    out = model(clips)
    k_models, frames = 2, 3
    assert out.embedding.shape == (2, model.embedding_dim)
    assert out.logits.shape == (2, 5)
    assert out.diversity.shape == (2,)
    assert out.spatial_maps.shape[:3] == (2, frames, k_models) and out.spatial_maps.shape[3:] == (3, 2)
    assert out.temporal_weights.shape == (2, frames, k_models)
    for tensor in (out.embedding, out.logits, out.diversity, out.spatial_maps, out.temporal_weights):
        assert torch.isfinite(tensor).all()
    torch.testing.assert_close(out.spatial_maps.sum(dim=(-1, -2)), torch.ones(2, frames, k_models))
    torch.testing.assert_close(out.temporal_weights.sum(dim=1), torch.ones(2, k_models))
    (out.embedding.square().mean() + out.logits.mean() + out.diversity.mean()).backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_eval_mode_returns_no_logits_and_is_deterministic():
    model = drsta_tiny(num_classes=5).eval()
    clips = clips_for(model)
    first, second = model(clips), model(clips)
    assert first.logits is None
    torch.testing.assert_close(first.embedding, second.embedding)


def test_forward_matches_the_equations_composed_by_hand():
    model = drsta_tiny(embedding_dim=None).double().eval()
    clips = clips_for(model).double()
    out = model(clips)
    frames = (clips.flatten(0, 1) - model.pixel_mean) / model.pixel_std
    cells = model.trunk(frames)  # (B·N, D, h, w)
    cells = cells.flatten(2).transpose(1, 2).reshape(2, model.num_frames, -1, cells.shape[1])
    attention = model.spatial_attention
    maps = functional.spatial_attention_maps(
        cells, attention.hidden_weight, attention.hidden_bias, attention.score_weight
    )
    gated = torch.einsum("bnkl,bnld->bnkd", maps, cells)
    enhancement = model.enhancement
    enhanced = functional.enhance_features(gated, enhancement.w, enhancement.b, enhancement.sigma, enhancement.fcn)
    pooled, weights = functional.temporal_attention(enhanced, model.temporal_attention.weight)
    torch.testing.assert_close(out.embedding, pooled.flatten(1))
    torch.testing.assert_close(out.temporal_weights, weights)
    torch.testing.assert_close(out.diversity, functional.diversity_penalty(maps).mean(dim=1))


def test_feature_enhancement_can_be_switched_off():
    model = drsta_tiny(feature_enhancement=False)
    assert model.enhancement is None
    assert not any("enhancement" in name for name, _ in model.named_parameters())
    assert torch.isfinite(model(clips_for(model)).embedding).all()


def test_enhancement_parameters_start_as_the_paper_says():
    model = drsta_tiny(num_frames=5)
    torch.testing.assert_close(model.enhancement.w.detach(), torch.ones(5, 5))
    torch.testing.assert_close(model.enhancement.b.detach(), torch.zeros(5))


def test_paper_grid_is_8_by_4_at_stride_2_and_16_by_8_at_stride_1():
    for stride, grid in [(2, (8, 4)), (1, (16, 8))]:
        trunk = ResNetTrunk("resnet18", last_stride=stride).eval()
        with torch.no_grad():
            assert trunk(torch.rand(1, 3, 256, 128)).shape[2:] == grid


class TestBadInput:
    def test_clip_of_another_length_is_refused(self):
        model = drsta_tiny(num_frames=4)
        with pytest.raises(ValueError, match=r"N=5 frames .* N=4"):
            model(torch.rand(2, 5, 3, *SMALL_INPUT))

    def test_wrong_rank_is_refused(self):
        with pytest.raises(ValueError, match=r"\(B, N, 3, H, W\)"):
            drsta_tiny()(torch.rand(4, 3, *SMALL_INPUT))

    def test_integer_clips_are_refused(self):
        with pytest.raises(ValueError, match="float"):
            drsta_tiny()(torch.zeros(2, 4, 3, *SMALL_INPUT, dtype=torch.uint8))

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("num_attention_models", 0),
            ("sigma", 0.0),
            ("sigma", -1.0),
            ("num_frames", 0),
            ("backbone", "vgg"),
        ],
    )
    def test_config_refuses(self, field, value):
        with pytest.raises(ValueError, match=field):
            ModelConfig(**{field: value})

    def test_module_refuses_k_below_one(self):
        with pytest.raises(ValueError, match=r"num_models \(K\)"):
            build_model(ModelConfig(backbone="tiny")).__class__(torch.nn.Identity(), 8, num_frames=4, num_models=0)


class TestPretrainedWeights:
    def test_loads_a_local_torchvision_state_dict(self, tmp_path):
        reference = torchvision.models.resnet18(weights=None)
        path = tmp_path / "resnet18.pth"
        torch.save(reference.state_dict(), path)
        model = build_model(ModelConfig(backbone="resnet18", pretrained_weights=path))
        torch.testing.assert_close(model.trunk.body[0].weight, reference.conv1.weight)
        torch.testing.assert_close(model.trunk.body[7][1].conv2.weight, reference.layer4[1].conv2.weight)

    def test_missing_file_names_it(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"nothing\.pth"):
            build_model(ModelConfig(backbone="resnet18", pretrained_weights=tmp_path / "nothing.pth"))

    def test_weights_of_another_depth_are_refused(self, tmp_path):
        path = tmp_path / "resnet18.pth"
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
        with pytest.raises(ValueError, match="does not match"):
            build_model(ModelConfig(backbone="resnet50", pretrained_weights=path))


@pytest.mark.parametrize("batch", [1, 3])
def test_export_round_trip_gives_the_same_outputs(tmp_path, batch):
    model = drsta_tiny(embedding_dim=16).eval()
    path = save_exported(export_model(model, clips_for(model)), tmp_path / "drsta.pt2")
    loaded = load_exported(path)
    clips = clips_for(model, batch=batch)  # another batch size than the example's
    want, got = model(clips), loaded(clips)
    assert sorted(got) == sorted(OUTPUT_KEYS)
    for key in OUTPUT_KEYS:
        torch.testing.assert_close(got[key], getattr(want, key))


def test_exported_program_keeps_the_clip_length():
    model = drsta_tiny(num_frames=4).eval()
    program = export_model(model, clips_for(model))
    with pytest.raises(Exception, match="4"):
        program.module()(torch.rand(2, 5, 3, *SMALL_INPUT))


def test_exported_file_loads_and_runs_without_importing_drsta(tmp_path):
    model = drsta_tiny().eval()
    clips = clips_for(model)
    path = save_exported(export_model(model, clips), tmp_path / "drsta.pt2")
    torch.save(clips, tmp_path / "clips.pt")
    script = (
        "import sys, torch\n"
        f"out = torch.export.load({str(path)!r}).module()(torch.load({str(tmp_path / 'clips.pt')!r}))\n"
        f"torch.save(out['embedding'], {str(tmp_path / 'embedding.pt')!r})\n"
        "assert not any(name.startswith('drsta') for name in sys.modules), 'drsta was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    torch.testing.assert_close(torch.load(tmp_path / "embedding.pt"), model(clips).embedding)
