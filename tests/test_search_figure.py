"""`drsta search --figure`: its flags checked before any work (one-line errors, exit status 2), and the figure of a
real registered model's search over frame folders, one of them deleted after it was embedded."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from PIL import Image

from drsta import viz
from drsta.config import ExperimentConfig
from drsta.model import build_model
from drsta.resources import CONFIG_DIR
from pipelines import search
from pipelines.cli import main
from pipelines.embed import write_embeddings
from pipelines.inference import embed_footage, footage, load_model
from pipelines.tracking import RunTracker, log_model

TINY = CONFIG_DIR / "tiny.yaml"


class Reached(Exception):
    """Raised by the patched gallery reader: the command got past its checks of --figure."""


@pytest.fixture
def no_work(monkeypatch):
    """Reading the gallery or loading a model means the flags were not checked first."""

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(search, "read_embeddings", reached)
    monkeypatch.setattr(search, "load_model", reached)


def fail(argv: list[str], capsys) -> str:
    """Run `drsta search argv`, expecting bad usage: exit status 2 and a one-line error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["search", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.startswith("drsta search: error: ") and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("figure", "message"),
    [("ranks.gif", r"--figure \S*ranks\.gif: give an image file name ending in \.png, \.jpg, \.jpeg"),
     ("ranks", r"--figure \S*ranks: give an image file name ending in \.png"),
     ("folder.png", r"--figure \S*folder\.png is a directory"),
     ("old.png", r"--figure \S*old\.png exists: choose another path, or pass --force")],
)  # fmt: skip
def test_figure_must_be_a_new_png_or_jpeg(figure, message, tmp_path, capsys, no_work):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "old.png").write_bytes(b"keep me")
    err = fail(["--gallery", "g.parquet", "--query", "q.mp4", "--figure", str(tmp_path / figure)], capsys)
    assert re.search(message, err), err
    assert (tmp_path / "old.png").read_bytes() == b"keep me"


def test_force_overwrites_an_existing_figure_and_jpeg_is_accepted(tmp_path, no_work):
    (tmp_path / "old.png").write_bytes(b"old")
    for figure, extra in [("old.png", ["--force"]), ("new.JPG", []), ("new.jpeg", [])]:
        with pytest.raises(Reached):  # past the checks: on to the gallery
            main(["search", "--gallery", "g.parquet", "--query", "q.mp4", "--figure", str(tmp_path / figure), *extra])


@pytest.mark.parametrize(
    ("argv", "with_figure", "message"),
    [(["--query", "a.mp4", "b.mp4", "--query-identity", "1", "2", "3"], True,
      "--query-identity: give one identity per --query (2) or one for all of them, got 3"),
     (["--query", "a.mp4", "--query-identity", "4"], False, "--query-identity only colours the borders of --figure")],
)  # fmt: skip
def test_query_identity_is_one_per_query_or_one_for_all(argv, with_figure, message, tmp_path, capsys, no_work):
    figure = ["--figure", str(tmp_path / "r.png")] if with_figure else []
    assert message in fail(["--gallery", "g.parquet", *argv, *figure], capsys)
    assert search.query_identities([7], 3) == [7, 7, 7] and search.query_identities(None, 2) == [None, None]
    assert search.query_identities([0, 5], 2) == [0, 5]


# --- the figure of a real search ---------------------------------------------------------------------------------

# Gallery: (identity, camera) of each frame folder; identity i is drawn in colour COLOURS[i].
GALLERY = {"id1-cam1": (1, 1), "id1-cam2": (1, 2), "id2-cam1": (2, 1), "id2-cam2": (2, 2), "id3-cam1": (3, 1)}
COLOURS = {1: (220, 40, 40), 2: (40, 40, 220), 3: (40, 200, 40), 9: (200, 200, 40)}


def write_tracklet(folder: Path, identity: int, seed: int, size: tuple[int, int]) -> Path:
    """Six PNG frames of a person-shaped block of identity's colour on noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(6):
        frame = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
        frame[8:-8, 8:-8] = np.array(COLOURS[identity]) + rng.integers(0, 30, 3, dtype=np.uint8)
        Image.fromarray(frame).save(folder / f"{i + 1}.png")
    return folder


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """A tiny untrained model registered as drsta v1, and a gallery of 5 frame folders embedded with it."""
    root = tmp_path_factory.mktemp("search-figure")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = ExperimentConfig.from_yaml(TINY).with_overrides({"loss.xent_weight": 0.0})
    torch.manual_seed(0)
    tracker = RunTracker(uri, "drsta", "search-figure", artifact_location=str(root / "artifacts"))
    tracker.start()
    clips = torch.rand(2, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    log_model(tracker, build_model(cfg.model).eval(), clips, cfg.to_dict(), {}, "fingerprint")
    size = (cfg.input.height, cfg.input.width)
    folders = {name: str(write_tracklet(root / "gallery" / name, pid, seed, size))
               for seed, (name, (pid, _)) in enumerate(GALLERY.items())}  # fmt: skip
    model = load_model("models:/drsta/1", uri, use_gpu=False)
    embedded = embed_footage(model, footage(list(folders.values())))
    labels = {folders[name]: label for name, label in GALLERY.items()}
    write_embeddings(root / "gallery.parquet", model, embedded.paths, embedded.embeddings, labels)
    query = write_tracklet(root / "query", 9, seed=99, size=size)  # not in the gallery
    return {"uri": uri, "root": root, "folders": folders, "query": query, "size": size, "cfg": cfg}


def ranked_table(stdout: str) -> dict[str, list[tuple[int, str]]]:
    """{query: [(identity or -1, path), ...] nearest first} from what `drsta search` printed."""
    table: dict[str, list[tuple[int, str]]] = {}
    for line in stdout.splitlines():
        if line.startswith("search: ") and not line.startswith("search: wrote"):
            query = table.setdefault(line.removeprefix("search: "), [])
        elif line.split() and line.split()[0].isdigit():
            _, _, identity, _, path = line.split()
            query.append((-1 if identity == "-" else int(identity), path))
    return table


def layout(num_queries: int, top_k: int, size: tuple[int, int], num_frames: int) -> tuple:
    """A figure laid out as search's (same rows, columns and frame size) and the pixels it draws."""
    clip = np.zeros((num_frames, *size, 3), dtype=np.uint8)
    tracklet = viz.RankedTracklet(clip, distance=0.5)
    fig = viz.ranked_results_figure([tracklet] * num_queries, [[tracklet] * top_k] * num_queries)
    fig.canvas.draw()
    return fig, np.asarray(fig.canvas.buffer_rgba())[..., :3]


def border(image: np.ndarray, ax) -> np.ndarray:
    """The pixel in the middle of the left side of `ax`'s box."""
    box = ax.get_window_extent()
    return image[image.shape[0] - round((box.y0 + box.y1) / 2), round(box.x0)].astype(int)


def colour(name: str) -> np.ndarray:
    return np.round(255 * np.array(to_rgb(name))).astype(int)


@pytest.mark.integration
def test_search_figure_of_a_real_model_frames_each_match_by_identity(gallery, tmp_path, capsys):
    own = gallery["folders"]["id1-cam1"]  # in the gallery with identity 1: the query's identity
    shutil.rmtree(gallery["folders"]["id3-cam1"])  # embedded, then deleted: a placeholder in every row (the only
    # test of this module's gallery)
    out = tmp_path / "figs" / "ranks.png"
    argv = ["search", "--gallery", str(gallery["root"] / "gallery.parquet"), "--query", own, str(gallery["query"]),
            "--top-k", "5", "--figure", str(out), "--tracking-uri", gallery["uri"]]  # fmt: skip
    main(argv)
    stdout = capsys.readouterr().out
    assert stdout.rstrip().endswith(f"search: wrote {out}")
    ranked = ranked_table(stdout)
    assert list(ranked) == [own, str(gallery["query"])] and ranked[own][0] == (1, own)  # itself first

    image = np.asarray(Image.open(out).convert("RGB"))
    reference, _ = layout(2, 5, gallery["size"], gallery["cfg"].model.num_frames)
    assert image.shape[:2] == tuple(np.round(reference.get_size_inches()[::-1] * 100).astype(int))  # 2 rows × 1+5
    for row, (query, identity) in enumerate([(own, 1), (str(gallery["query"]), None)]):
        tiles = reference.axes[row * 6 + 1 : row * 6 + 6]
        for ax, (match, path) in zip(tiles, ranked[query], strict=True):
            expected = viz.match_color(identity, match)
            np.testing.assert_allclose(border(image, ax), colour(expected), atol=3, err_msg=f"{query} → {path}")
            box = ax.get_window_extent()
            top = image[image.shape[0] - round(box.y1 - 0.1 * box.height), round((box.x0 + box.x1) / 2)]
            is_placeholder = np.allclose(top, round(255 * viz.PLACEHOLDER_GRAY), atol=2)
            assert is_placeholder == (path == gallery["folders"]["id3-cam1"]), path
    assert sum(colour(viz.MATCH_COLOR).tolist() == border(image, ax).tolist() for ax in reference.axes[1:6]) == 2

    # --query-identity for both queries, as JPEG; --force over it again.
    jpeg = tmp_path / "ranks.jpg"
    again = [*argv[:-4], "--figure", str(jpeg), "--query-identity", "2", "--tracking-uri", gallery["uri"]]
    main(again)
    capsys.readouterr()
    assert "exists" in fail(again[1:], capsys)
    main([*again, "--force"])
    ranked = ranked_table(capsys.readouterr().out)
    with Image.open(jpeg) as opened:
        assert opened.format == "JPEG"
        image = np.asarray(opened.convert("RGB"))
    for row, query in enumerate([own, str(gallery["query"])]):
        for ax, (match, _) in zip(reference.axes[row * 6 + 1 : row * 6 + 6], ranked[query], strict=True):
            np.testing.assert_allclose(border(image, ax), colour(viz.match_color(2, match)), atol=40)
