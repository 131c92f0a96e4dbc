"""The Dagster UI in a real browser: ``dagster dev`` over the data folder and the (PostgreSQL-backed) instance where
the pipeline has run (``tests/deployed_platform.py``), opened in headless Chromium. The asset graph shows every
layer's assets, the checks show on their asset with the result the run recorded, and each page is saved as a
screenshot under ``artifacts/ui/``.

The layers (raw, dbt features, offline store, model, scores, online store, drift) are Dagster asset groups: each must
exist, and every asset of every group of the definitions must be on its group's graph.
"""

import collections
import time
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest
from deployed_platform import DeployedPlatform
from playwright.sync_api import Page
from ui_support import DagsterDev

from dagster_project.defs.monitoring.assets import DRIFT_CHECK

LOCATION = "churn_platform"
# The layers of the platform, as asset groups, in the order the data flows.
LAYERS = {
    "raw": "ingestion",
    "dbt features": "features",
    "offline store": "offline_store",
    "model": "ml",
    "scores": "scoring",
    "online store": "serving",
    "drift": "monitoring",
}
# A node of the graph shows the last part of its key. Zoomed out to fit a large group, Dagster draws minimal nodes
# whose labels are cut in the middle ("stg_activi…_events"). The class is Dagster's own (a CSS module of the UI
# of the pinned version).
NODE_LABEL = '[class*="AssetNode_assetName"]'


def _definitions() -> dg.Definitions:
    from dagster_project.definitions import defs as load_definitions

    defs = load_definitions()

    return defs


def _assets_by_group() -> dict[str, list[dg.AssetKey]]:
    groups: dict[str, list[dg.AssetKey]] = collections.defaultdict(list)
    for spec in _definitions().resolve_all_asset_specs():
        groups[spec.group_name or "default"].append(spec.key)
    return groups


def _checks_by_asset() -> dict[dg.AssetKey, list[str]]:
    checks: dict[dg.AssetKey, list[str]] = collections.defaultdict(list)
    for key in _definitions().resolve_asset_graph().asset_check_keys:
        checks[key.asset_key].append(key.name)
    return checks


def _open(page: Page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    # Dagster greets a new browser profile once with a community dialog: dismiss it so it hides nothing. Once
    # dismissed, the profile remembers it (local storage), so later pages do not wait for it.
    if page.evaluate("window.localStorage.getItem('communityNux')") is not None:
        return
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=10_000)
        skip.click()
    except Exception:  # Playwright's TimeoutError: no dialog this time
        pass


def _label_shows(label: str, name: str) -> bool:
    """Whether a node label is ``name``, whole or cut in the middle with an ellipsis."""
    if "…" not in label:
        return label == name
    head, tail = label.split("…", 1)
    return name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)


def _node_labels(page: Page, expected: int) -> list[str]:
    """The labels of the asset nodes on the graph, once at least ``expected`` of them are drawn."""
    deadline = time.monotonic() + 60
    while True:
        labels = [label.strip() for label in page.locator(NODE_LABEL).all_inner_texts()]
        if len(labels) >= expected or time.monotonic() > deadline:
            return labels
        time.sleep(0.5)


def _asset_url(base_url: str, key: dg.AssetKey) -> str:
    return f"{base_url}/assets/{'/'.join(quote(part, safe='') for part in key.path)}"


def test_the_asset_graph_shows_every_layer(dagster_ui: DagsterDev, page: Page, artifacts: Path) -> None:
    groups = _assets_by_group()
    missing = set(LAYERS.values()) - set(groups)
    assert not missing, f"layers without assets in the definitions: {missing} (groups: {sorted(groups)})"
    # The named layers, then any other group the definitions hold (maintenance, ...): every asset on its graph.
    layers = {**LAYERS, **{group: group for group in sorted(set(groups) - set(LAYERS.values()))}}
    for layer, group in layers.items():
        _open(page, f"{dagster_ui.base_url}/locations/{LOCATION}/asset-groups/{group}/lineage")
        names = collections.Counter(key.path[-1] for key in groups[group])
        labels = _node_labels(page, expected=sum(names.values()))
        for name, count in names.items():
            # A name shared by two keys (a dbt model and its lake export) is two nodes.
            shown = sum(_label_shows(label, name) for label in labels)
            assert shown >= count, f"{layer} ({group}): {name} is not on the graph; nodes: {labels}"
        page.screenshot(path=str(artifacts / f"lineage-{group}.png"))

    # The whole lineage, every group on one page, for a person to look at.
    _open(page, f"{dagster_ui.base_url}/asset-groups")
    for group in layers.values():
        page.get_by_text(group, exact=True).first.wait_for(state="visible", timeout=30_000)
    page.screenshot(path=str(artifacts / "lineage-global.png"))


def test_the_catalog_lists_every_asset_with_its_full_key(dagster_ui: DagsterDev, page: Page, artifacts: Path) -> None:
    keys = [key for group in _assets_by_group().values() for key in group]
    page.set_viewport_size({"width": 1600, "height": 300 + 70 * len(keys)})  # no row scrolled out of the list
    _open(page, f"{dagster_ui.base_url}/assets")
    # The catalog renders each name twice, once hidden to measure it: wait for the visible one. A long name is
    # shown cut in the middle ("monitoring / …e_predictions"): wait for the shortest, which fits its column.
    shortest = min(keys, key=lambda key: len(key.to_user_string()))
    page.get_by_text(shortest.to_user_string().replace("/", " / "), exact=True).filter(visible=True).first.wait_for(
        timeout=60_000
    )
    deadline = time.monotonic() + 30
    while True:  # the rows arrive with the page's queries: wait for all of them, for a while
        text = page.inner_text("body")
        missing = [key.to_user_string() for key in keys if key.to_user_string().replace("/", " / ") not in text]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, f"not in the catalog: {missing}"
    page.screenshot(path=str(artifacts / "catalog.png"), full_page=True)


def _check_subjects() -> list[tuple[dg.AssetKey, list[str]]]:
    """The drift asset's checks (the issue's demand), and a raw table's checks (there from the first layer on)."""
    checks = _checks_by_asset()
    groups = _assets_by_group()
    subjects = [(key, checks[key]) for key in groups[LAYERS["drift"]] if checks.get(key)]
    assert any("drift" in name for _, names in subjects for name in names), "the drift layer has no drift check"
    raw_customers = dg.AssetKey(["raw", "customers"])
    return [*subjects, (raw_customers, checks[raw_customers])]


def test_checks_are_visible_on_their_asset_with_their_latest_result(
    dagster_ui: DagsterDev,
    deployed_platform: DeployedPlatform,
    page: Page,
    artifacts: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in deployed_platform.env.items():
        if key.startswith("DAGSTER_POSTGRES_"):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(deployed_platform.dagster_home)) as instance:
        for key, names in _check_subjects():
            # What the run recorded for each check; the page must show the same (a check still planned shows none).
            statuses = {}
            for name in names:
                record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(key, name))
                statuses[name] = record.status.value if record else "never evaluated"
                # The night evaluated the batch drift check, whichever way it went (the online one waits for traffic).
                if name == DRIFT_CHECK:
                    assert statuses[name] in {"SUCCEEDED", "FAILED"}, f"the drift check {name}: {statuses[name]}"
            _open(page, f"{_asset_url(dagster_ui.base_url, key)}?view=checks")
            page.get_by_text(f"Checks ({len(names)})").first.wait_for(state="visible", timeout=60_000)
            shown = {"SUCCEEDED": "Succeeded", "FAILED": "Failed"}
            for status in {shown[s] for s in statuses.values() if s in shown}:
                page.get_by_text(status, exact=True).first.wait_for(state="visible", timeout=30_000)
            text = page.inner_text("body")
            for name, status in statuses.items():
                assert name in text, f"check {name} of {key.to_user_string()} is not shown"
                if status in shown:
                    assert shown[status] in text, f"check {name}: the run recorded {status}, the page shows otherwise"
            page.screenshot(path=str(artifacts / f"checks-{'-'.join(key.path)}.png"))


@pytest.mark.parametrize("view", ["overview", "events"])
def test_a_materialized_asset_page_shows_its_history(
    dagster_ui: DagsterDev,
    deployed_platform: DeployedPlatform,
    page: Page,
    artifacts: Path,
    view: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in deployed_platform.env.items():
        if name.startswith("DAGSTER_POSTGRES_"):
            monkeypatch.setenv(name, value)  # the instance's storage is the deployed Postgres
    key = dg.AssetKey(["raw", "customers"])
    with dg.DagsterInstance.from_config(str(deployed_platform.dagster_home)) as instance:
        event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None, "the night materialized no raw customers"
    rows_kept = event.asset_materialization.metadata["rows_kept"].value
    _open(page, f"{_asset_url(dagster_ui.base_url, key)}?view={view}")
    page.get_by_text("rows_kept").first.wait_for(state="visible", timeout=60_000)  # metadata of the latest run
    page.screenshot(path=str(artifacts / f"asset-raw-customers-{view}.png"))
    text = page.inner_text("body")
    # The page shows what the run recorded: the partition it materialized and its row count.
    assert event.asset_materialization.partition in text, f"partition {event.asset_materialization.partition} not shown"
    assert f"{rows_kept:,}" in text or str(rows_kept) in text, f"rows_kept {rows_kept} is not shown"
