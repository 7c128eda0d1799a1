"""Contract tests over every model variant and every architecture option, parity with the equations and with
the authors' code, bad input, and the export round trip."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from drsta.archive import check_program
from drsta.config import LossConfig, ModelConfig
from drsta.data.synthetic import SyntheticSpec, plan_tracklets, render_annotated
from drsta.losses import build_objective
from drsta.model import VARIANTS, build_model, drsta_tiny, functional
from drsta.model.backbone import ResNetTrunk
from drsta.model.enhancement import FeatureEnhancement
from drsta.model.export import OUTPUT_KEYS, export_model, load_exported, save_exported
from drsta.model.projection import ComponentProjection
from drsta.model.spatial_attention import SharedSpatialAttention

SMALL_INPUT = (64, 32)  # (H, W): a 2×1 cell grid, enough for every code path on the CPU

# Every row of the ablation (spatial pooling × temporal pooling × feature enhancement) and the authors' options,
# on the tiny trunk. Global average pooling has one component, so K = 1 there.
ARCHITECTURES = {
    "paper": {},
    "average-average-plain (the TP baseline)": {
        "spatial_pooling": "average", "temporal_pooling": "average", "feature_enhancement": False,
        "num_attention_models": 1,
    },
    "average-average-enhanced": {"spatial_pooling": "average", "temporal_pooling": "average",
                                 "num_attention_models": 1},
    "average-attention-plain": {"spatial_pooling": "average", "feature_enhancement": False,
                                "num_attention_models": 1},
    "average-attention-enhanced": {"spatial_pooling": "average", "num_attention_models": 1},
    "attention-average-plain": {"temporal_pooling": "average", "feature_enhancement": False},
    "attention-average-enhanced": {"temporal_pooling": "average"},
    "attention-attention-plain": {"feature_enhancement": False},
    "fixed temporal weights": {"learn_temporal_weights": False},
    "shared head": {"attention_head": "shared"},
    "component projection": {"component_dim": 8},
    "authors' code": {"attention_head": "shared", "attention_hidden_dim": 8, "component_dim": 8},
    "authors' code + neck": {"attention_head": "shared", "component_dim": 8, "embedding_dim": 12},
    "paper + neck": {"embedding_dim": 12},
}  # fmt: skip


def clips_for(model, batch=2, size=SMALL_INPUT):
    return torch.rand(batch, model.num_frames, 3, *size)


# A known limitation of Eq. 1 as printed (enhancement_similarity "inner_product", reported in issue 11): with the
# trunk's unnormalised D = 512 or 2048 features, Φ = XᵀX has entries of 10²–10³, so Eq. 3's row softmax is one-hot
# and Ψ (W and b) gets no gradient. test_inner_product_enhancement_is_one_hot_at_resnet_scale pins it; the tiny
# trunk, the authors' unit-norm components and the "scaled" (default) and "cosine" similarities stay out of it.
ONE_HOT_ENHANCEMENT = {"enhancement.w", "enhancement.b"}
SIMILARITIES = ("inner_product", "scaled", "cosine")


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
    no_grad = {name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    one_hot = variant != "tiny" and model.projection is None and model.enhancement.similarity == "inner_product"
    assert sorted(no_grad - (ONE_HOT_ENHANCEMENT if one_hot else set())) == []


# --- Feature enhancement's similarity (Eq. 1): as printed, ÷ √D, or cosine ----------------------------------------


def naive_enhance(x: np.ndarray, w: np.ndarray, b: np.ndarray, sigma: float, fcn_w: np.ndarray, similarity: str):
    """Eq. 1–4 per clip and component, row i of C pooling into frame i, with Eq. 1's three scales."""
    batch, frames, k_models, dim = x.shape
    out = np.zeros_like(x)
    for clip in range(batch):
        for k in range(k_models):
            xk = x[clip, :, k, :].T  # X_k: D × N
            unit = xk / np.linalg.norm(xk, axis=0, keepdims=True)
            phi = {"inner_product": xk.T @ xk, "scaled": xk.T @ xk / math.sqrt(dim), "cosine": unit.T @ unit}
            psi = np.array([[w[i, j] * math.exp(-abs(i - j) / sigma) + b[j] for j in range(frames)]
                            for i in range(frames)])  # fmt: skip
            scores = phi[similarity] + psi
            c = np.exp(scores - scores.max(axis=1, keepdims=True))
            c /= c.sum(axis=1, keepdims=True)  # Eq. 3
            for i in range(frames):
                out[clip, i, k] = fcn_w @ sum(c[i, j] * xk[:, j] for j in range(frames)) + xk[:, i]  # Eq. 4
    return out


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_enhancement_matches_the_transcription_for_every_similarity(similarity):
    x = torch.randn(2, 5, 3, 7, dtype=torch.float64) * 3  # large enough that the three scales differ
    enhancement = FeatureEnhancement(7, 5, sigma=1.7, similarity=similarity).double()
    with torch.no_grad():
        enhancement.w.copy_(torch.randn(5, 5))
        enhancement.b.copy_(torch.randn(5))
    want = naive_enhance(x.numpy(), enhancement.w.detach().numpy(), enhancement.b.detach().numpy(), 1.7,
                         enhancement.fcn.weight.detach().numpy(), similarity)  # fmt: skip
    np.testing.assert_allclose(enhancement(x).detach().numpy(), want, rtol=1e-10, atol=1e-10)
    functional_out = functional.enhance_features(x, enhancement.w, enhancement.b, 1.7, enhancement.fcn, similarity)
    np.testing.assert_allclose(functional_out.detach().numpy(), want, rtol=1e-10, atol=1e-10)


def test_similarity_scales():
    x = torch.randn(2, 4, 3, 16, dtype=torch.float64).relu() * 5
    inner = functional.feature_similarity(x, "inner_product")
    torch.testing.assert_close(functional.feature_similarity(x, "scaled"), inner / 4.0)  # √16
    cosine = functional.feature_similarity(x, "cosine")
    assert cosine.abs().max() <= 1 + 1e-12
    torch.testing.assert_close(cosine.diagonal(dim1=-2, dim2=-1), torch.ones(2, 3, 4, dtype=torch.float64))
    torch.testing.assert_close(functional.feature_similarity(x * 100, "cosine"), cosine)  # scale-free
    assert functional.feature_similarity(x, "inner_product").shape == (2, 3, 4, 4)  # (B, K, N, N)


def test_cosine_similarity_of_a_zero_feature_is_zero_and_keeps_gradients_finite():
    x = torch.randn(1, 4, 2, 8, dtype=torch.float64)
    x[0, 1, 0] = 0  # a component that gated nothing but zeros
    x.requires_grad_(True)
    phi = functional.feature_similarity(x, "cosine")
    assert torch.equal(phi[0, 0, 1], torch.zeros(4, dtype=torch.float64))
    enhancement = FeatureEnhancement(8, 4, sigma=1.0, similarity="cosine").double()
    enhancement(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_unknown_similarity_is_refused():
    with pytest.raises(ValueError, match="inner_product, scaled, cosine"):
        FeatureEnhancement(8, 4, sigma=1.0, similarity="dot")
    with pytest.raises(ValueError, match="inner_product, scaled, cosine"):
        functional.feature_similarity(torch.rand(1, 4, 2, 8), "dot")
    with pytest.raises(ValueError, match="enhancement_similarity"):
        ModelConfig(enhancement_similarity="dot")


def with_similarity(model, similarity):
    """`model` with a fresh feature enhancement of the given similarity (same D, N and σ)."""
    dim = model.enhancement.fcn.in_features
    model.enhancement = FeatureEnhancement(dim, model.num_frames, model.enhancement.sigma, similarity=similarity)
    return model


def synthetic_clips(num_frames: int, height: int = 128, width: int = 64) -> torch.Tensor:
    """Clips (B, N, 3, H, W) of rendered synthetic people (2 identities × 2 cameras): realistic trunk features."""
    spec = SyntheticSpec(seed=3, num_train_ids=2, num_test_ids=0, num_cameras=2, min_frames=num_frames,
                         max_frames=num_frames, height=height, width=width)  # fmt: skip
    frames = [render_annotated(spec, tracklet)[0] for tracklet in plan_tracklets(spec)]  # (N, H, W, 3) uint8 each
    return torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).float() / 255


def enhancement_at_init(model, clips):
    """Backpropagate the training loss of `model` (3 classes) on `clips`; returns Φ, Ψ and C of its enhancement."""
    captured = {}
    model.enhancement.register_forward_hook(lambda module, args, out: captured.update(x=args[0].detach()))
    full_objective_loss(model, clips)[0].backward()
    enhancement = model.enhancement
    phi = functional.feature_similarity(captured["x"], enhancement.similarity)  # Eq. 1, (B, K, N, N)
    psi = functional.temporal_similarity(enhancement.w.detach(), enhancement.b.detach(), enhancement.sigma)  # Eq. 2
    return phi, psi, torch.softmax(phi + psi, dim=-1)  # Eq. 3


def test_inner_product_enhancement_is_one_hot_at_resnet_scale():
    model = VARIANTS["small"](num_classes=3, num_frames=3, num_attention_models=2).train()  # ResNet-18, D = 512
    model = with_similarity(model, "inner_product")
    phi, psi, contribution = enhancement_at_init(model, clips_for(model, size=(96, 64)))
    assert phi.abs().amax() > 100 and psi.abs().amax() <= 1  # Ψ cannot compete with Φ: W, b and σ do nothing
    assert (contribution.amax(dim=-1) > 0.999).all()  # every frame pools (almost) one frame


@pytest.mark.parametrize("similarity", ["scaled", "cosine"])
def test_scaled_and_cosine_enhancement_stay_soft_at_resnet_scale_and_train_w_and_b(similarity):
    torch.manual_seed(0)
    model = VARIANTS["small"](num_classes=3, num_frames=4, num_attention_models=2).train()  # ResNet-18, D = 512
    model = with_similarity(model, similarity)
    phi, _, contribution = enhancement_at_init(model, synthetic_clips(num_frames=4))
    num_frames = contribution.shape[-1]
    entropy = -(contribution * contribution.log()).sum(dim=-1) / math.log(num_frames)  # 1: uniform, 0: one-hot
    assert contribution.amax(dim=-1).mean() < 0.9 and (contribution.amax(dim=-1) < 0.999).all()  # no row one-hot
    assert entropy.mean() > 0.3
    enhancement = model.enhancement
    assert enhancement.w.grad.norm() > 0.05 and enhancement.b.grad.norm() > 0.05  # "inner_product": 6e-5–2e-2
    # σ matters too: with W fixed at ones, σ = 0.5 and σ = 4 give other contributions (total variation per row).
    ones, zeros = torch.ones(num_frames, num_frames), torch.zeros(num_frames)
    sharp, flat = (torch.softmax(phi + functional.temporal_similarity(ones, zeros, s), dim=-1) for s in (0.5, 4.0))
    assert 0.5 * (sharp - flat).abs().sum(dim=-1).mean() > 0.05


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_every_similarity_exports_to_aten_only_and_reloads(tmp_path, similarity):
    model = with_similarity(drsta_tiny(), similarity)
    model.train()(clips_for(model, batch=4))  # BatchNorm running statistics that are not their initial values
    path = save_exported(export_model(model, clips_for(model)), tmp_path / "drsta.pt2")
    check_program(path.read_bytes(), str(path))  # also done by load_exported: ATen operators only
    clips = clips_for(model, batch=3)
    got, want = load_exported(path)(clips), model.eval()(clips)
    for key in OUTPUT_KEYS:
        torch.testing.assert_close(got[key], getattr(want, key))


@pytest.mark.parametrize("similarity", ["inner_product", "cosine"])  # not the default: they show the wiring
def test_build_model_passes_the_enhancement_similarity_on(similarity):
    model = build_model(ModelConfig(backbone="tiny", num_frames=4, enhancement_similarity=similarity))
    assert model.enhancement.similarity == similarity


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
    enhanced = functional.enhance_features(gated, enhancement.w, enhancement.b, enhancement.sigma, enhancement.fcn,
                                           enhancement.similarity)  # fmt: skip
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


# --- Every architecture option: contract, training, export --------------------------------------------------------


def full_objective_loss(model, clips, num_classes=3):
    """The training loss of every identity loss at once (OIM, triplet, cross-entropy) and the regularizer."""
    cfg = LossConfig(oim_weight=1.0, triplet_weight=1.0, xent_weight=1.0, diversity_weight=1.0)
    objective = build_objective(cfg, model.embedding_dim, num_classes).train()
    out = model(clips)
    targets = torch.arange(len(clips)) % num_classes
    return objective(out.embedding, out.logits, out.diversity, targets)[0], out


@pytest.mark.parametrize("overrides", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_every_architecture_keeps_the_contract_and_every_parameter_trains(overrides):
    model = drsta_tiny(num_classes=3, **overrides).train()
    num_models = model.num_models
    assert num_models == (1 if overrides.get("spatial_pooling") == "average" else 3)
    clips = clips_for(model, batch=6)
    loss, out = full_objective_loss(model, clips)
    assert out.spatial_maps.shape == (6, 4, num_models, 2, 1)
    assert out.temporal_weights.shape == (6, 4, num_models)
    assert out.diversity.shape == (6,)
    torch.testing.assert_close(out.spatial_maps.sum(dim=(-1, -2)), torch.ones(6, 4, num_models))
    torch.testing.assert_close(out.temporal_weights.sum(dim=1), torch.ones(6, num_models))
    if overrides.get("spatial_pooling") == "average":
        torch.testing.assert_close(out.spatial_maps, torch.full_like(out.spatial_maps, 1 / 2), rtol=0, atol=0)
        assert torch.equal(out.diversity, torch.zeros(6))
    if overrides.get("temporal_pooling") == "average":
        torch.testing.assert_close(out.temporal_weights, torch.full_like(out.temporal_weights, 1 / 4), rtol=0, atol=0)
    loss.backward()
    # "Trains" means a gradient that is not rounding noise: a bias cancelled by a BatchNorm gets ~1e-8.
    dead = {name: p.grad for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().max() > 1e-5}
    assert list(dead) == []


@pytest.mark.parametrize("overrides", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_every_architecture_exports_and_reloads(tmp_path, overrides):
    model = drsta_tiny(**overrides)
    model.train()(clips_for(model, batch=4))  # BatchNorm running statistics that are not their initial values
    path = save_exported(export_model(model, clips_for(model)), tmp_path / "drsta.pt2")
    clips = clips_for(model, batch=3)  # another batch size than the example's
    got, want = load_exported(path)(clips), model.eval()(clips)
    for key in OUTPUT_KEYS:
        torch.testing.assert_close(got[key], getattr(want, key))


def test_the_temporal_average_pooling_baseline_is_the_mean_over_cells_and_frames():
    model = drsta_tiny(spatial_pooling="average", temporal_pooling="average", feature_enhancement=False,
                       num_attention_models=1).double().eval()  # fmt: skip
    clips = clips_for(model, batch=3).double()
    cells = model.trunk((clips.flatten(0, 1) - model.pixel_mean) / model.pixel_std)  # (B·N, D, h, w)
    want = cells.mean(dim=(2, 3)).unflatten(0, (3, model.num_frames)).mean(dim=1)  # GAP, then mean over N
    torch.testing.assert_close(model(clips).embedding, want)
    assert model.embedding_dim == 64  # D: K = 1 component


def test_spatial_average_pooling_needs_k_equal_to_one():
    with pytest.raises(ValueError, match="num_attention_models to 1"):
        ModelConfig(spatial_pooling="average", num_attention_models=3)
    with pytest.raises(ValueError, match="num_attention_models to 1"):
        drsta_tiny(spatial_pooling="average")
    with pytest.raises(ValueError, match="K = 1"):
        build_model(ModelConfig(backbone="tiny")).__class__(
            nn.Identity(), 8, num_frames=4, num_models=2, spatial_pooling="average"
        )


@pytest.mark.parametrize(
    ("argument", "value"), [("spatial_pooling", "max"), ("attention_head", "both"), ("temporal_pooling", "lstm")]
)
def test_the_module_refuses_unknown_options(argument, value):
    with pytest.raises(ValueError, match=argument):
        build_model(ModelConfig(backbone="tiny")).__class__(nn.Identity(), 8, num_frames=4, num_models=2,
                                                            **{argument: value})  # fmt: skip


def test_k_equal_to_one_has_exactly_zero_diversity_also_with_attention():
    model = drsta_tiny(num_attention_models=1)
    assert torch.equal(model(clips_for(model)).diversity, torch.zeros(2))


# --- The neck and the enhancement's FCN: no parameter that a BatchNorm cancels -----------------------------------


def test_no_bias_feeds_a_batchnorm_or_a_constant_offset():
    model = drsta_tiny(embedding_dim=12)
    assert model.neck[0].bias is None  # the BN right after subtracts the batch mean: a bias would never train
    # Eq. 4's FCN, "a linear transformation": a bias there is a constant offset of the descriptor, which the
    # neck's BN removes (and a Euclidean loss ignores).
    assert model.enhancement.fcn.bias is None


def test_a_constant_offset_of_the_enhanced_features_is_cancelled_by_the_neck():
    # Why the FCN has no bias: adding one changes nothing a training-mode model computes with the neck.
    model = drsta_tiny(embedding_dim=12).double().train()
    clips = clips_for(model, batch=4).double()
    without = model(clips).embedding
    model.enhancement.fcn.bias = nn.Parameter(torch.randn(64, dtype=torch.float64))
    torch.testing.assert_close(model(clips).embedding, without)


# --- Fixed or learned W of Eq. 2: σ is only a reparametrisation when W is learned ---------------------------------


def test_fixed_temporal_weights_are_a_buffer_kept_in_the_state_dict():
    learned, fixed = drsta_tiny(), drsta_tiny(learn_temporal_weights=False)
    assert "enhancement.w" in dict(learned.named_parameters())
    assert "enhancement.w" not in dict(fixed.named_parameters())
    assert "enhancement.w" in fixed.state_dict() and "enhancement.b" in dict(fixed.named_parameters())
    torch.testing.assert_close(fixed.enhancement.w, torch.ones(4, 4))
    fixed.load_state_dict(learned.state_dict())  # the same keys either way


def test_sigma_matters_with_fixed_w_and_is_a_reparametrisation_with_learned_w():
    x, b = torch.randn(2, 4, 3, 5, dtype=torch.float64) * 0.3, torch.zeros(4, dtype=torch.float64)
    fcn = nn.Identity()
    ones = torch.ones(4, 4, dtype=torch.float64)
    assert not torch.allclose(functional.enhance_features(x, ones, b, 0.5, fcn),
                              functional.enhance_features(x, ones, b, 4.0, fcn))  # fmt: skip
    # Any Ψ reached with σ = 0.5 is reached with σ = 4 by another W: W′ = W ⊙ exp(−|i−j|/0.5) / exp(−|i−j|/4).
    distance = (torch.arange(4.0)[:, None] - torch.arange(4.0)[None, :]).abs().double()
    w = torch.randn(4, 4, dtype=torch.float64)
    w_other = w * torch.exp(-distance / 0.5) / torch.exp(-distance / 4.0)
    torch.testing.assert_close(functional.enhance_features(x, w, b, 0.5, fcn),
                               functional.enhance_features(x, w_other, b, 4.0, fcn))  # fmt: skip


# --- The authors' code: shared attention head and per-component projection, against transcriptions -----------------


class AuthorsAttention(nn.Module):
    """`SattentionNet`'s attention, transcribed from the authors' code: conv1 + bn1 + relu1, conv2 + bn2, a softmax
    over the h·w cells, then the gated sum (their avg_pool2d × h·w)."""

    def __init__(self, dim: int, num_models: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, hidden_dim, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden_dim)
        self.conv2 = nn.Conv2d(hidden_dim, num_models, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(num_models)
        self.num_models = num_models

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (F, D, h, w) -> gated (F, K, D), maps (F, K, h·w)."""
        frames, dim, height, width = x.shape
        atn = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        atn = F.softmax(atn.view(frames * self.num_models, height * width), dim=1)  # BottleSoftmax
        maps = atn.view(frames, self.num_models, height * width)
        weighted = x.view(frames, 1, dim, height, width) * atn.view(frames, self.num_models, 1, height, width)
        gated = F.avg_pool2d(weighted.view(-1, dim, height, width), (height, width)) * height * width
        return gated.view(frames, self.num_models, dim), maps


def test_shared_head_matches_the_authors_code_in_training_and_in_eval_mode():
    torch.manual_seed(3)
    frames, dim, height, width, k_models, hidden = 6, 10, 4, 3, 3, 5
    authors = AuthorsAttention(dim, k_models, hidden).double()
    with torch.no_grad():  # BN parameters away from their defaults; bn2's β too, which the softmax cancels
        for bn in (authors.bn1, authors.bn2):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.normal_()
    ours = SharedSpatialAttention(dim, k_models, hidden).double()
    with torch.no_grad():
        ours.hidden.weight.copy_(authors.conv1.weight[:, :, 0, 0])
        ours.hidden_norm.weight.copy_(authors.bn1.weight)
        ours.hidden_norm.bias.copy_(authors.bn1.bias)
        ours.score.weight.copy_(authors.conv2.weight[:, :, 0, 0])
        ours.score_gain.copy_(authors.bn2.weight)
    x = torch.randn(frames, dim, height, width, dtype=torch.float64)
    cells = x.flatten(2).transpose(1, 2).reshape(2, 3, height * width, dim)  # (B, N, L, D), B·N = frames
    for mode in ("train", "eval"):  # train: batch statistics (and updated running ones); eval: running ones
        authors.train(mode == "train")
        ours.train(mode == "train")
        want_gated, want_maps = authors(x)
        gated, maps = ours(cells)
        torch.testing.assert_close(maps.flatten(0, 1), want_maps, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gated.flatten(0, 1), want_gated, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours.hidden_norm.running_var, authors.bn1.running_var, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.score_norm.running_mean, authors.bn2.running_mean, rtol=1e-10, atol=1e-12)


def test_component_projection_matches_the_authors_feat_and_norm():
    projection = ComponentProjection(6, 4).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)  # (B, N, K, D)
    got = projection(x)
    weight, bias = projection.linear.weight.detach().numpy(), projection.linear.bias.detach().numpy()
    for b in range(2):
        for n in range(3):
            for k in range(5):
                feat = [sum(weight[c, d] * x[b, n, k, d].item() for d in range(6)) + bias[c] for c in range(4)]
                norm = np.sqrt(sum(value * value for value in feat))
                np.testing.assert_allclose(got[b, n, k].detach().numpy(), np.array(feat) / norm, rtol=1e-10)


def test_authors_variant_composed_by_hand():
    model = drsta_tiny(attention_head="shared", component_dim=8).double().eval()
    clips = clips_for(model).double()
    out = model(clips)
    cells = model.trunk((clips.flatten(0, 1) - model.pixel_mean) / model.pixel_std)
    cells = cells.flatten(2).transpose(1, 2).reshape(2, model.num_frames, -1, cells.shape[1])
    gated, maps = model.spatial_attention(cells)
    features = F.normalize(model.projection.linear(gated), dim=-1)
    enhancement = model.enhancement
    enhanced = functional.enhance_features(features, enhancement.w, enhancement.b, enhancement.sigma, enhancement.fcn,
                                           enhancement.similarity)  # fmt: skip
    pooled, weights = functional.temporal_attention(enhanced, model.temporal_attention.weight)
    assert model.embedding_dim == 3 * 8  # K × component_dim
    torch.testing.assert_close(out.embedding, pooled.flatten(1))
    torch.testing.assert_close(out.temporal_weights, weights)
    torch.testing.assert_close(out.diversity, functional.diversity_penalty(maps).mean(dim=1))
