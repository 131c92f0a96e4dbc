"""The Evidently drift report the pipeline saved, opened in headless Chromium: it renders (its embedded scripts
run and draw the widgets) rather than being a file that merely exists, and it says what the drift asset recorded.
Screenshot: ``artifacts/ui/drift-report.png``.
"""

from pathlib import Path

import dagster as dg
import pytest
from deployed_platform import DeployedPlatform
from playwright.sync_api import BrowserContext


@pytest.fixture
def drift_materialization(deployed_platform: DeployedPlatform, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The metadata of the night's ``monitoring/drift_report`` materialization, read from the deployed instance."""
    for key, value in deployed_platform.env.items():
        if key.startswith("DAGSTER_POSTGRES_"):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(deployed_platform.dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["monitoring", "drift_report"]))
    assert event is not None and event.asset_materialization is not None, "the night saved no drift report"
    assert event.asset_materialization.partition == deployed_platform.night.isoformat()
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def test_the_saved_drift_report_renders_in_the_browser(
    drift_materialization: dict[str, object],
    deployed_platform: DeployedPlatform,
    browser: BrowserContext,
    artifacts: Path,
) -> None:
    path = Path(str(drift_materialization["report_path"]))
    assert path.is_relative_to(deployed_platform.lake_root / "monitoring" / "drift_reports"), path
    assert path.stat().st_size > 10_000, path
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        # Evidently draws its widgets with scripts embedded in the file: the title is there only once they ran.
        page.get_by_text("Drift in column").first.wait_for(state="visible", timeout=60_000)
        text = page.inner_text("body")
        night = deployed_platform.night.isoformat()
        assert f"Data drift on {night}" in text, "the platform's banner (what was compared) is missing"
        for feature in str(drift_materialization["key_features"]).split(", "):
            if feature != "none":  # a card per feature, each with its score
                assert f"Drift in column '{feature}'" in text, f"the report has no card for {feature}"
        drifted = str(drift_materialization["drifted_features"])
        # The banner names the ten most drifted features; every drifted feature has its card below.
        banner = text.split("Drifted features:")[1].split("\n")[0]
        for rank, feature in enumerate([] if drifted == "none" else drifted.split(", ")):
            assert rank >= 10 or feature in banner, f"the banner does not name {feature}"
            assert f"Drift in column '{feature}'" in text, f"{feature} drifted, but the report has no card for it"
        assert page.locator("svg").count() > 0, "no chart was drawn"
        assert not errors, f"script errors while rendering: {errors}"
        page.screenshot(path=str(artifacts / "drift-report.png"))
    finally:
        page.close()
