"""The MLflow UI as a user sees it: `mlflow ui` on a store, drsta's pages rendered by headless Chromium and checked
for what drsta puts there (metrics, figures, the champion alias, descriptions), with a screenshot of each page.

    python -m tests.mlflow_ui --store demo-output/mlflow.db --out ui-check    # `make ui-check`, after `make demo`

The pages: the experiment (opening on its runs, not MLflow's GenAI view), the sweep's parent run and its figure,
the trial run that trained the champion, its figures and its LoggedModel with the model's metrics, the registered
model with the champion alias, and the champion version (its description, its source run). Chromium is Debian's
`chromium` package (or $CHROMIUM).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from mlflow import MlflowClient

from tests.local_cluster import free_port

# MLflow 3.17's UI opens every experiment in its GenAI view unless the workflow is chosen (in the page or here).
MODEL_TRAINING = "?workflowType=machine_learning"
RENDER_BUDGET_MS = 20_000  # virtual time for the page's scripts and requests (Chromium waits for the network)
WINDOW = "1440,1100"


@dataclass(frozen=True)
class Page:
    """A UI page and what it must show.

    Attributes:
        name: the page's screenshot file stem.
        route: the UI's route after `#`.
        texts: texts the rendered page must contain.
        absent: texts it must not contain.
        images: images it must show, by their `alt` (the artifact path, for MLflow's artifact viewer).
    """

    name: str
    route: str
    texts: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    images: tuple[str, ...] = ()


def drsta_pages(
    tracking_uri: str, experiment: str = "drsta", model: str = "drsta", alias: str = "champion"
) -> list[Page]:
    """The pages of a store that a drsta sweep registered a champion in, and what each must show.

    Raises:
        ValueError: the store lacks the experiment, the sweep, the registered model or its alias (the message
            says which, and how to make it: `make demo`).
    """
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no experiment {experiment!r} in {tracking_uri}: run `make demo` (or a sweep) first")
    eid = found.experiment_id
    registered = next(iter(client.search_registered_models(f"name = '{model}'")), None)
    if registered is None or alias not in registered.aliases:
        raise ValueError(f"no registered model {model!r} with alias {alias!r} in {tracking_uri}: run `make demo`")
    version = client.get_model_version(model, registered.aliases[alias])
    trial = client.get_run(version.run_id)
    # The version's LoggedModel: among its run's outputs, the one it was registered from (a SQL registry does not
    # keep a version's model id).
    outputs = [client.get_logged_model(output.model_id) for output in trial.outputs.model_outputs]
    model_id = next((logged.model_id for logged in outputs if logged.artifact_location == version.source), None)
    if model_id is None:
        raise ValueError(f"{model} version {version.version} was not registered from a LoggedModel of its run")
    parent_id = trial.data.tags.get("mlflow.parentRunId")
    if parent_id is None:
        raise ValueError(f"{model} version {version.version} was not trained by a sweep's trial: run `make demo`")
    parent = client.get_run(parent_id)
    figures = sorted(a.path for a in client.list_artifacts(trial.info.run_id, "figures"))
    fields = [f for f in figures if Path(f).name.startswith("receptive_fields_")]
    if not fields:
        raise ValueError(f"the champion's run {trial.info.run_name} has no receptive-field figure (figures: {figures})")
    runs = f"/experiments/{eid}/runs"
    model_route = f"/models/{model}"
    return [
        Page("experiment", f"/experiments/{eid}", texts=("Runs", parent.info.run_name, "matching runs"),
             absent=("Token Usage",)),
        Page("sweep-run", f"{runs}/{parent_id}", texts=(parent.info.run_name, "best/val/mAP")),
        Page("sweep-figure", f"{runs}/{parent_id}/artifacts/figures/sweep.png", images=("figures/sweep.png",)),
        Page("trial-run", f"{runs}/{trial.info.run_id}",
             texts=(trial.info.run_name, "val/mAP", "train/loss", "val/attn_foreground",
                    f"{model} v{version.version}")),
        Page("trial-figure", f"{runs}/{trial.info.run_id}/artifacts/{fields[0]}", images=(fields[0],)),
        Page("logged-model", f"/experiments/{eid}/models/{model_id}",
             texts=(model_id, "val/mAP", trial.info.run_name)),
        Page("registered-model", model_route, texts=(f"@ {alias}", registered.description[:60])),
        Page("champion-version", f"{model_route}/versions/{version.version}",
             texts=(f"@ {alias}", version.description[:60], trial.info.run_name)),
    ]  # fmt: skip


def find_chromium() -> str | None:
    """$CHROMIUM, else Debian's chromium (or Chrome) on PATH; None if there is none."""
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


@contextmanager
def mlflow_ui(tracking_uri: str, timeout_s: float = 300.0) -> Iterator[str]:
    """`mlflow ui` on `tracking_uri` at a free local port; yields its base URL, stops it on the way out."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        try:
            _wait_until_serving(f"http://127.0.0.1:{port}", server, log, timeout_s)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_serving(url: str, server: subprocess.Popen, log: IO[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"mlflow ui at {url} did not start within {timeout_s:.0f} s:\n{output}")
        time.sleep(0.5)


def render(chromium: str, url: str, screenshot: Path | None = None) -> str:
    """The DOM of `url` once its scripts settled, by headless Chromium; a PNG of the page to `screenshot` too.

    Raises:
        RuntimeError: Chromium loaded nothing (its last lines say why).
    """
    port = urlsplit(url).port
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--window-size={WINDOW}", f"--virtual-time-budget={RENDER_BUDGET_MS}",
            f"--explicitly-allowed-ports={port}"]  # fmt: skip
    with tempfile.TemporaryDirectory() as profile:
        base.append(f"--user-data-dir={profile}")
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=300, check=True)
        if not dom.stdout.strip():
            raise RuntimeError(f"Chromium rendered nothing for {url}:\n{dom.stderr[-2000:]}")
        if screenshot is not None:
            subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=300, check=True)
    return dom.stdout


def visible_text(dom: str) -> str:
    """The page's text, whitespace collapsed (scripts and styles left out)."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def shown_images(dom: str) -> set[str]:
    """The `alt` of every image with a source."""
    images = re.findall(r"<img\b[^>]*>", dom, flags=re.I)
    return {html.unescape(alt) for tag in images if re.search(r'\bsrc="[^"]+"', tag)
            for alt in re.findall(r'\balt="([^"]*)"', tag)}  # fmt: skip


def problems_of(page: Page, dom: str) -> list[str]:
    """What `page` lacks in its rendered `dom`, as phrases; empty when it shows everything it must."""
    text, images = visible_text(dom), shown_images(dom)
    problems = [f"no {expected!r}" for expected in page.texts if expected not in text]
    problems += [f"shows {unwanted!r}" for unwanted in page.absent if unwanted in text]
    problems += [f"no image {expected!r}" for expected in page.images if expected not in images]
    return problems


def check(tracking_uri: str, out: Path | None, chromium: str) -> dict[str, list[str]]:
    """Render every page of `drsta_pages` (a screenshot each into `out`, when given); each page's problems."""
    pages = drsta_pages(tracking_uri)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results = {}
    with mlflow_ui(tracking_uri) as url:
        for page in pages:
            screenshot = None if out is None else out / f"{page.name}.png"
            dom = render(chromium, f"{url}/#{page.route}{MODEL_TRAINING}", screenshot)
            results[page.name] = problems_of(page, dom)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("demo-output/mlflow.db"),
                        help="the SQLite store to look at (default: %(default)s, `make demo`'s)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("ui-check"), help="screenshots (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.store.is_file():
        parser.error(f"no MLflow store at {args.store}: run `make demo` first, or pass --store")
    chromium = find_chromium()
    if chromium is None:
        parser.error("no Chromium: install it (`apt-get install -y chromium`) or set $CHROMIUM")
    results = check(f"sqlite:///{args.store.resolve()}", args.out, chromium)
    for name, problems in results.items():
        print(f"{'ok  ' if not problems else 'FAIL'} {name:<18} {'; '.join(problems)}")
    print(f"screenshots in {args.out}/")
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
