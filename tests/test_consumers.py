"""Registry consumers on synthetic videos: models pull, embed, search, explain — and their errors."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from drsta.config import ExperimentConfig
from drsta.data.decode import probe, read_clip
from drsta.data.sampling import evaluation_indices
from drsta.engine import clips_to_input
from drsta.model import build_model
from drsta.resources import CONFIG_DIR
from pipelines.cli import main
from pipelines.tracking import RunTracker, log_model, set_alias

pytestmark = pytest.mark.integration

TINY = CONFIG_DIR / "tiny.yaml"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tiny model for 64×40 clips registered as drsta v1 with alias champion."""
    root = tmp_path_factory.mktemp("consumers")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = ExperimentConfig.from_yaml(TINY).with_overrides({"input.width": 40, "loss.xent_weight": 0.0})
    torch.manual_seed(3)
    model = build_model(cfg.model).eval()
    tracker = RunTracker(uri, "drsta", "consumers", artifact_location=str(root / "artifacts"))
    tracker.start()
    example = torch.rand(2, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    version = log_model(tracker, model, example, cfg.to_dict(), {}, "fingerprint")
    set_alias("drsta", "champion", version.version, uri)
    return {"uri": uri, "model": model, "cfg": cfg, "root": root}


@pytest.fixture(scope="module")
def videos(manifest) -> list[Path]:
    return sorted((manifest.parent / "synth" / "videos").rglob("*.mp4"))


def expected_embedding(registry, video: Path) -> np.ndarray:
    cfg = registry["cfg"]
    indices = evaluation_indices(_length(video), cfg.model.num_frames)[0]
    clip = read_clip("video", str(video), (), indices, (cfg.input.height, cfg.input.width))
    with torch.no_grad():
        return registry["model"](clips_to_input(clip[None], torch.device("cpu"))).embedding[0].numpy()


def _length(video: Path) -> int:
    return probe("video", str(video), ()).num_frames


def fail(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code not in (0, None)
    return str(exit_info.value.code) + capsys.readouterr().err


def test_pull_writes_a_loadable_model_and_refuses_a_non_empty_directory(registry, tmp_path, capsys):
    main(["models", "pull", "drsta@champion", "--out", str(tmp_path / "champion"), "--tracking-uri", registry["uri"]])
    model_dir = tmp_path / "champion" / "model"
    assert {"MLmodel", "config.yaml", "metadata.json"} <= {p.name for p in model_dir.iterdir()}
    assert (model_dir / "data" / "model.pt2").is_file()
    assert "models:/drsta/1" in (tmp_path / "champion" / "source.json").read_text()
    error = fail(["models", "pull", "drsta@champion", "--out", str(tmp_path / "champion"),
                  "--tracking-uri", registry["uri"]], capsys)  # fmt: skip
    assert "not empty" in error
    error = fail(["models", "pull", "drsta@nope", "--out", str(tmp_path / "x"), "--tracking-uri", registry["uri"]],
                 capsys)  # fmt: skip
    assert "no alias 'nope'" in error and "champion" in error


def test_embed_videos_and_frame_folders_from_the_registry_or_a_pulled_copy(registry, videos, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    clip = read_clip("video", str(videos[0]), (), list(range(_length(videos[0]))))
    for i, frame in enumerate(clip):  # unpadded names: 1.png … 10.png must come in frame order
        Image.fromarray(frame).save(frames / f"{i + 1}.png")
    inputs = [str(v) for v in videos[:3]] + [str(frames)]
    out = tmp_path / "emb.parquet"
    main(["embed", *inputs, "--model", "models:/drsta@champion", "--out", str(out), "--tracking-uri", registry["uri"]])
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == inputs
    assert table.schema.metadata[b"drsta.model_uri"] == b"models:/drsta/1"
    embeddings = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    for video, row in zip(videos[:3], embeddings, strict=False):
        np.testing.assert_allclose(row, expected_embedding(registry, video), rtol=1e-4, atol=1e-5)
    # The frame folder holds the first video's frames (PNG round trip of decoded frames): same descriptor.
    np.testing.assert_allclose(embeddings[3], embeddings[0], rtol=1e-4, atol=1e-5)

    main(["models", "pull", "drsta@champion", "--out", str(tmp_path / "pulled"), "--tracking-uri", registry["uri"]])
    main(["embed", inputs[0], "--model", str(tmp_path / "pulled"), "--out", str(tmp_path / "pulled.parquet")])
    pulled = np.asarray(pq.read_table(tmp_path / "pulled.parquet").column("embedding").to_pylist())
    np.testing.assert_allclose(pulled[0], embeddings[0], rtol=1e-5, atol=1e-6)


def test_embed_errors_name_the_input_and_keep_the_good_ones(registry, videos, tmp_path, capsys):
    uri = ["--tracking-uri", registry["uri"]]
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "emb.parquet"
    error = fail(["embed", str(videos[0]), str(garbage), "--model", "models:/drsta/1", "--out", str(out), *uri], capsys)
    assert str(garbage) in error and "1 inputs could not be decoded" in error
    assert pq.read_table(out).column("path").to_pylist() == [str(videos[0])]  # the good one is kept

    error = fail(["embed", str(tmp_path / "missing.mp4"), "--model", "models:/drsta/1", "--out",
                  str(tmp_path / "b.parquet"), *uri], capsys)  # fmt: skip
    assert "missing.mp4: no such file or folder" in error
    error = fail(["embed", str(videos[0]), "--model", "models:/nobody@champion", "--out", str(tmp_path / "c.parquet"),
                  *uri], capsys)  # fmt: skip
    assert "no registered model 'nobody'" in error
    error = fail(["embed", str(videos[0]), "--model", str(tmp_path), "--out", str(tmp_path / "d.parquet")], capsys)
    assert "not a pulled model" in error
    error = fail(["embed", str(videos[0]), "--model", "models:/drsta/1", "--out", str(out), *uri], capsys)
    assert "exists" in error


def test_search_finds_the_query_itself_first_and_ranks_identities(registry, manifest, videos, tmp_path, capsys):
    uri = ["--tracking-uri", registry["uri"]]
    gallery = tmp_path / "gallery.parquet"
    main(["embed", "--manifest", str(manifest), "--role", "gallery", "--model", "models:/drsta@champion",
          "--out", str(gallery), *uri])  # fmt: skip
    table = pq.read_table(gallery).to_pydict()
    query = Path(table["path"][2])
    capsys.readouterr()
    main(["search", "--gallery", str(gallery), "--query", str(query), "--top-k", "3", *uri])
    printed = capsys.readouterr().out
    first = printed.splitlines()[2].split()
    assert first[0] == "1" and float(first[1]) < 1e-3 and first[-1] == str(query)
    assert int(first[2]) == table["identity"][2] and "identities, nearest first" in printed

    error = fail(["search", "--gallery", str(tmp_path / "none.parquet"), "--query", str(query)], capsys)
    assert "drsta embed" in error
    other = tmp_path / "other.parquet"
    other.write_bytes(b"not parquet")
    assert "not a Parquet file" in fail(["search", "--gallery", str(other), "--query", str(query)], capsys)


def test_explain_draws_both_figures_and_rejects_undecodable_footage(registry, videos, tmp_path, capsys):
    out = tmp_path / "fig" / "explain.png"
    main(["explain", str(videos[0]), "--model", "models:/drsta@champion", "--out", str(out),
          "--tracking-uri", registry["uri"]])  # fmt: skip
    image = np.asarray(Image.open(out))
    assert image.ndim == 3 and image.shape[0] > image.shape[1] / 2  # Fig. 1 rows above Fig. 2's strip
    assert "temporal weights" in capsys.readouterr().out
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 1000)
    error = fail(["explain", str(garbage), "--model", "models:/drsta/1", "--out", str(tmp_path / "g.png"),
                  "--tracking-uri", registry["uri"]], capsys)  # fmt: skip
    assert "garbage.mp4" in error and not (tmp_path / "g.png").exists()
