"""The MLflow UI in headless Chromium on a store laid out as a drsta sweep leaves it (`tests.mlflow_ui`)."""

import numpy as np
import pytest
import torch

from drsta import viz
from drsta.config import ExperimentConfig
from drsta.model import build_model
from drsta.resources import CONFIG_DIR
from pipelines.tracking import RunTracker, log_model, set_alias
from tests.mlflow_ui import Page, check, drsta_pages, find_chromium, problems_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory) -> str:
    """A sweep's parent run with its figure, a trial run under it with metrics, figures and a LoggedModel
    registered as drsta v1 @ champion: what `drsta tune` writes, made without Ray."""
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = str(root / "mlartifacts")
    parent = RunTracker(uri, "drsta", "demo", tags={"drsta_sweep": "demo"}, artifact_location=artifacts)
    parent.start()
    parent.log_metrics({"best/val/mAP": 0.5}, step=0)
    parent.log_figure(viz.sweep_figure({"K": [2, 3]}, [0.4, 0.5], best=1, score_label="best val mAP"), "sweep.png")
    trial = RunTracker(uri, "drsta", "demo-0001", parent_run_id=parent.run_id, artifact_location=artifacts)
    trial.start()
    cfg = ExperimentConfig.from_yaml(CONFIG_DIR / "tiny.yaml").with_overrides({"loss.xent_weight": 0.0})
    for epoch in range(2):
        trial.log_metrics({"train/loss": 2.0 - epoch, "val/mAP": 0.4 + 0.1 * epoch, "val/attn_foreground": 1.2}, epoch)
    trial.log_figure(viz.cmc_figure(np.full(20, 0.5), label="val", mAP=0.5), "receptive_fields_q_0001.png")
    example = torch.rand(2, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    version = log_model(trial, build_model(cfg.model).eval(), example, cfg.to_dict(), {"val/mAP": 0.5}, "abc", step=1)
    set_alias("drsta", "champion", version.version, uri)
    return uri


def test_the_pages_name_what_the_sweep_recorded(sweep_store):
    pages = {page.name: page for page in drsta_pages(sweep_store)}
    assert "demo-0001" in pages["trial-run"].texts and "best/val/mAP" in pages["sweep-run"].texts
    assert pages["trial-figure"].images == ("figures/receptive_fields_q_0001.png",)
    assert pages["champion-version"].route == "/models/drsta/versions/1"


def test_a_store_without_a_champion_is_named_with_the_fix(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = RunTracker(uri, "drsta", "lonely", artifact_location=str(tmp_path / "artifacts"))
    tracker.start()
    with pytest.raises(ValueError, match=r"no registered model 'drsta' with alias 'champion'.*make demo"):
        drsta_pages(uri)


def test_a_page_lacking_what_it_must_show_is_reported():
    page = Page("p", "/x", texts=("val/mAP",), absent=("Traces",), images=("figures/a.png",))
    dom = '<div>Traces</div><img alt="figures/a.png"><script>val/mAP</script>'  # an image without a source
    assert problems_of(page, dom) == ["no 'val/mAP'", "shows 'Traces'", "no image 'figures/a.png'"]
    shown = '<span>val/mAP</span><img alt="figures/a.png" src="blob:x">'
    assert problems_of(page, shown) == []


@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (apt-get install -y chromium)")
def test_chromium_sees_metrics_figures_and_the_champion(sweep_store, tmp_path):
    results = check(sweep_store, tmp_path / "shots", find_chromium())
    assert results == {name: [] for name in results}, results
    assert len(results) == 8 and all((tmp_path / "shots" / f"{name}.png").stat().st_size > 10_000 for name in results)
