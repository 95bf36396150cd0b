"""The Grafana dashboards (ops/grafana/*.json, docs/city.md "Metrics and the
Grafana dashboard"): each is a dashboard Grafana imports (panels on its
24-column grid, each with a Prometheus query and the `datasource`
variable), covers what the city watches, and names only metrics the
services expose: both services are started and their /metrics scraped, so
a renamed or removed metric fails here, not on a wall screen."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cloud_bridge.api import create_app as city_app
from cloud_bridge.metrics import Metrics
from cloud_bridge.service import City, gateways_online
from cloud_bridge.settings import CitySettings
from cloud_bridge.store import CityStore
from devkit.testing import school_clock, wait_for
from edge_gateway.api import ApiSettings
from edge_gateway.api import create_app as gateway_app
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from edge_gateway.journal import Journal

GRAFANA = Path(__file__).resolve().parent.parent / "ops" / "grafana"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
TOKEN = "grafana-test-token-0123456789"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table"}
# What the city asked to see (issue 12), each by a metric that says it.
WATCHED = {
    "ingest rate": "preau_city_records_stored_total",
    "refused records by reason": "preau_city_rejected_total",
    "acks": "preau_city_acks_published_total",
    "gateways online": "preau_gateway_broker_connected",
    "gaps": "preau_city_gap_requests_total",
    "dropped": "preau_city_records_dropped_total",
    "gateway uplink bytes": "preau_gateway_uplink_bytes_total",
    "telemetry dropped": "preau_gateway_telemetry_dropped_total",
    "journal commits": "preau_gateway_journal_pending",
    "journal commit time": "preau_gateway_journal_commit_seconds_bucket",
    "gateways online, as the city knows them": "preau_city_gateways_online",
    "decisions": "preau_gateway_decisions_total",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers once
    strings, label matchers, ranges, grouping clauses and function calls
    are set aside."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def queries(board: dict) -> list[str]:
    found = [t["expr"] for p in board["panels"] for t in p["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query))
    return found


def test_the_promql_reader():
    assert metric_names('sum by (reason) (increase(preau_city_rejected_total{instance=~"$instance"}[$__range])) > 0'
                        ) == {"preau_city_rejected_total"}
    assert metric_names('rate(a_total[5m]) / on (instance) group_left b') == {"a_total", "b"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_each_file_is_a_dashboard_grafana_imports(path):
    board = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(board["title"], str) and board["title"]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert "id" not in board or board["id"] is None  # a fixed id would overwrite another dashboard on import
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert panels
    assert len({p["id"] for p in panels}) == len(panels) and all(isinstance(p["id"], int) for p in panels)
    cells = set()
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"] and panel["description"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "xywh")
        assert grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24 and grid["h"] >= 1
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        targets = panel["targets"]
        assert targets and len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == DATASOURCE and target["expr"].strip()
            assert metric_names(target["expr"]), target["expr"]


# the services' metrics, scraped ------------------------------------------------------------------------


def exposed(text: str) -> set[str]:
    """Every name a query may use: each sample's, and for a family with no
    sample yet (a labelled counter before its first event) the names its
    type gives it."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("_sum", "_count", "_created")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


@pytest.fixture
def city_metrics(tmp_path):
    store = CityStore(str(tmp_path / "city.db"))
    try:
        app = city_app(store, CitySettings(token=TOKEN), Metrics())
        with TestClient(app, client=("127.0.0.1", 40000)) as client:
            response = client.get("/metrics")
        assert response.status_code == 200
        yield response.text
    finally:
        store.close()


@pytest.fixture
def gateway_metrics(mosquitto, tmp_path):
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "gateway_id": "gw-0341234a", "rooms": {"cm2-b": {}}, "policy": {"zone": "C"}})
    gateway = Gateway(config, clock=school_clock()).start()
    try:
        response = TestClient(gateway_app(gateway, ApiSettings(token=TOKEN))).get(
            "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        yield response.text
    finally:
        gateway.stop()


@pytest.mark.broker
def test_every_metric_a_dashboard_reads_is_one_the_services_expose(city_metrics, gateway_metrics):
    names = exposed(city_metrics) | exposed(gateway_metrics)
    assert "preau_city_records_stored_total" in names and "preau_gateway_decisions_total" in names
    read: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for expr in queries(board):
            for name in metric_names(expr):
                read.setdefault(name, set()).add(path.name)
    unknown = {name: sorted(files) for name, files in read.items() if name not in names}
    assert not unknown, f"metrics the dashboards read and no service exposes: {unknown}"
    missing = {what: name for what, name in WATCHED.items() if name not in read}
    assert not missing, f"no panel for: {missing}"


# the two metrics the dashboards asked for (issue 12) ------------------------------------------------------


def test_the_journal_times_each_commit(tmp_path):
    journal = Journal(str(tmp_path / "gateway.db"), lambda ticket, seq: None)
    journal.start(0)
    try:
        journal.submit([])
        wait_for(lambda: journal.committed == 1, 10, "the first commit")
        journal.before_commit = lambda: time.sleep(0.06)  # a stalled SD card: counted in the commit's time
        journal.submit([])
        wait_for(lambda: journal.committed == 2, 10, "the stalled commit")
    finally:
        journal.stop()
    family = journal.commit_times.family()
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert family.name == "preau_gateway_journal_commit_seconds" and family.type == "histogram"
    assert samples[("preau_gateway_journal_commit_seconds_count", None)] == 2
    assert samples[("preau_gateway_journal_commit_seconds_bucket", "+Inf")] == 2
    assert samples[("preau_gateway_journal_commit_seconds_bucket", "0.05")] <= 1  # the stall took 60 ms at least
    assert samples[("preau_gateway_journal_commit_seconds_sum", None)] >= 0.06


def test_the_city_counts_the_gateways_online_from_its_database(tmp_path):
    store = CityStore(str(tmp_path / "city.db"))
    try:
        metrics, now = Metrics(), [0.0]
        metrics.watch_gateways(lambda: gateways_online(store), every_s=15, clock=lambda: now[0])
        assert metrics.snapshot()["gateways_online"] == 0
        store.set_gateway_state("0341234a", True, "gw-0341234a", 100.0)
        store.set_gateway_state("0342345b", True, "gw-0342345b", 100.0)
        store.set_gateway_state("0343456c", False, "gw-0343456c", 100.0)
        assert metrics.snapshot()["gateways_online"] == 0  # read again only every 15 s, whatever the scrapes
        now[0] = 15.0
        assert metrics.snapshot()["gateways_online"] == 2
        assert "preau_city_gateways_online 2.0" in metrics.exposition().decode()
        unreadable = Metrics()
        unreadable.watch_gateways(lambda: None)
        assert math.isnan(unreadable.snapshot()["gateways_online"])
    finally:
        store.close()


def test_the_city_service_feeds_the_gauge(tmp_path, monkeypatch):
    monkeypatch.setenv("PREAU_CITY_ADMIN_PASSWORD", "un-mot-de-passe-assez-long-1")
    city = City.open(CitySettings(token=TOKEN, db_path=str(tmp_path / "city.db")))
    try:
        city.store.set_gateway_state("0341234a", True, "gw-0341234a", 100.0)
        # no lifespan: the ingest (and its broker) stays out of this
        text = TestClient(city.app, client=("127.0.0.1", 40000)).get("/metrics").text
        assert "preau_city_gateways_online 1.0" in text
    finally:
        city.close()
