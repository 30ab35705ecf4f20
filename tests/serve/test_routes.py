"""Every page and API route of ``saescope serve`` on a tiny model and index, and every bad
input: a clear 4xx with a message, never a 500, and the server keeps serving."""

from __future__ import annotations

import html
import json

import pytest

from saescope.serve.state import Limits


def busiest(served) -> int:
    return max(served.stats, key=lambda s: s.fires).feature


def test_overview_shows_provenance_metrics_histogram_table_and_map(client, served) -> None:
    r = client.get("/i/tiny")
    assert r.status_code == 200
    page = r.text
    assert "layers.1.resid_post" in page and "sha256:" in page and "tokens indexed" in page
    assert "fvu" in page  # metrics.json beside the SAE
    assert page.count("<circle") == served.index.n_features  # the map: one dot a feature
    assert 'id="features"' in page and "/i/tiny/feature/" in page
    assert client.get("/").status_code == 200 and "tiny" in client.get("/").text


def test_overview_sorts_filters_and_pages(client, served) -> None:
    f = busiest(served)
    r = client.get("/i/tiny?sort=fires&order=desc")
    first = r.text.split('id="features"')[1].split("/i/tiny/feature/")[1].split('"')[0]
    assert int(first) == f
    asc = client.get("/i/tiny?sort=feature&order=asc").text.split('id="features"')[1]
    assert asc.split("/i/tiny/feature/")[1].startswith('0"')
    word = served.peaks[f][0][0].strip()
    filtered = client.get("/i/tiny", params={"q": word}).text
    assert f'/i/tiny/feature/{f}"' in filtered
    none = client.get("/i/tiny", params={"q": "zzzz-no-such-token"}).text
    assert "(0 features)" in none


@pytest.mark.parametrize(
    "query, needle",
    [
        ("sort=nonsense", "sort must be one of"),
        ("order=up", "order must be asc or desc"),
        ("dmin=abc", "'dmin' must be a number"),
        ("dmax=2", "'dmax' must be in 0..1"),
        ("page=-1", "'page' must be in 0..1000000"),
    ],
)
def test_overview_bad_query_is_422(client, query, needle) -> None:
    r = client.get(f"/i/tiny?{query}")
    assert r.status_code == 422 and needle in html.unescape(r.text) and "Traceback" not in r.text


def test_feature_page_and_json(client, served) -> None:
    f = busiest(served)
    record = served.index.feature(f)
    page = client.get(f"/i/tiny/feature/{f}").text
    assert f"Feature {f}" in page and "Top activations" in page and "rgba(255,110,0," in page
    assert "Sampled contexts" in page and "Where it is silent" in page and "<svg" in page
    assert 'id="test-text"' in page and "steer with this feature" in page
    for other, _ in record.neighbours:
        assert f'href="/i/tiny/feature/{other}"' in page
    data = client.get(f"/i/tiny/feature/{f}.json").json()
    assert data["feature"] == f and data["fires"] == record.fires
    assert len(data["top"]) == len(record.top) and data["top"][0]["tokens"] == record.top[0].tokens
    assert data["histogram"] == record.histogram.tolist()


@pytest.mark.parametrize(
    "url, status, needle",
    [
        ("/i/tiny/feature/48", 404, "feature 48 does not exist"),
        ("/i/tiny/feature/99999999999", 404, "does not exist"),
        ("/i/tiny/feature/-1", 404, ""),
        ("/i/tiny/feature/abc", 404, ""),
        ("/i/tiny/feature/48.json", 404, "does not exist"),
        ("/i/other", 404, "no index named 'other'"),
        ("/i/other/feature/1", 404, "no index named"),
        ("/nowhere", 404, ""),
    ],
)
def test_unknown_things_are_404(client, url, status, needle) -> None:
    r = client.get(url)
    assert r.status_code == status and needle in html.unescape(r.text)
    assert "Traceback" not in r.text


def test_search_page_and_api(client) -> None:
    page = client.get("/i/tiny/search", params={"q": "death"})
    assert page.status_code == 200 and 'id="hits"' in page.text
    api = client.get("/api/i/tiny/search", params={"q": "death"}).json()
    assert api["hits"] and all(h["url"].startswith("/i/tiny/feature/") for h in api["hits"])
    assert client.get("/i/tiny/search").status_code == 200  # the empty form
    assert "no features match" in client.get("/i/tiny/search?q=qqqxqq").text
    r = client.get("/api/i/tiny/search", params={"q": "x" * 101})
    assert r.status_code == 422 and "limit is 100" in r.json()["error"]
    r = client.get("/api/i/tiny/search")
    assert r.status_code == 422 and "give a search word" in r.json()["error"]
    assert client.get("/api/i/tiny/search?q=a&limit=0").status_code == 422


def test_map_page(client, served) -> None:
    page = client.get("/i/tiny/map").text
    assert page.count("<circle") == served.index.n_features and "PCA" in page
    assert 'data-f="0"' in page


def test_test_text_api_shades_every_token(client, served, model) -> None:
    f = busiest(served)
    text = "The death of the king"
    r = client.post(f"/api/i/tiny/feature/{f}/activations", json={"text": text})
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["tokens"]) == len(model.tokenizer(text)["input_ids"])
    assert len(data["excluded"]) == len(data["tokens"]) and not any(data["excluded"])
    assert 'id="shaded"' in data["html"] and "data-v=" in data["html"]


def test_inspector(client, served) -> None:
    assert 'id="inspect-form"' in client.get("/i/tiny/inspect?prompt=hi").text
    r = client.post("/api/i/tiny/inspect", json={"prompt": "The death of", "position": -1, "k": 3})
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["tokens"]) == len(data["features"]) and len(data["next_tokens"]) == 10
    assert "data-picture" in data["html"] and "Logit lens" in data["html"]
    assert "/i/tiny/feature/" in data["html"]


def test_steer_differs_from_clean(client, served) -> None:
    f = busiest(served)
    page = client.get("/i/tiny/steer", params={"edit": f"clamp {f}=50"}).text
    assert f"clamp {f}=50" in page
    body = {"prompt": "The death of", "edits": f"clamp {f}=200", "max_new_tokens": 6}
    r = client.post("/api/i/tiny/steer", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["clean"] != data["steered"] and "continuations" in data["html"]
    ablate = client.post("/api/i/tiny/steer", json=body | {"edits": [f"ablate {f}"]})
    assert ablate.status_code == 200
    both = body | {"edits": "", "neurons": "layers.0.mlp_act:3=50",
                   "vector_positive": "death", "vector_negative": "garden"}  # fmt: skip
    r = client.post("/api/i/tiny/steer", json=both)
    assert r.status_code == 200, r.text


def test_sweep_plots_success_against_loss(client, served) -> None:
    f = busiest(served)
    body = {"prompt": "The death of", "feature": f, "op": "clamp", "values": "0, 100",
            "vocabulary": "death, king", "loss_text": "The king of the town.",
            "samples": 2, "max_new_tokens": 4}  # fmt: skip
    r = client.post("/api/i/tiny/sweep", json=body)
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    assert [p["coefficient"] for p in points] == [0.0, 100.0]
    assert all(0 <= p["success"] <= 1 and p["loss"] > 0 for p in points)
    assert 'id="sweep-plot"' in r.json()["html"]


STEER = {"prompt": "The death of", "edits": "clamp 1=5", "max_new_tokens": 4}


@pytest.mark.parametrize(
    "url, body, status, needle",
    [
        ("/api/i/tiny/steer", STEER | {"prompt": "word " * 60}, 413, "the limit is 40"),
        ("/api/i/tiny/steer", STEER | {"prompt": "x" * 5000}, 413, "limit is 4,000"),
        ("/api/i/tiny/steer", STEER | {"prompt": ""}, 422, "'prompt' is empty"),
        ("/api/i/tiny/steer", STEER | {"prompt": 5}, 422, "must be a string"),
        (
            "/api/i/tiny/steer",
            STEER | {"max_new_tokens": 9},
            422,
            "'max_new_tokens' must be in 1..8",
        ),
        ("/api/i/tiny/steer", STEER | {"max_new_tokens": "many"}, 422, "whole number"),
        (
            "/api/i/tiny/steer",
            STEER | {"samples": 3, "temperature": 1},
            422,
            "'samples' must be in 1..2",
        ),
        ("/api/i/tiny/steer", STEER | {"samples": 2}, 422, "need a temperature > 0"),
        ("/api/i/tiny/steer", STEER | {"temperature": "nan"}, 422, "finite number"),
        ("/api/i/tiny/steer", STEER | {"seed": -1}, 422, "'seed' must be in"),
        ("/api/i/tiny/steer", STEER | {"edits": "clamp 48=1"}, 404, "feature 48 does not exist"),
        ("/api/i/tiny/steer", STEER | {"edits": "boost 1=1"}, 422, "start with one of"),
        ("/api/i/tiny/steer", STEER | {"edits": "clamp 1"}, 422, "expected INDEX=VALUE"),
        ("/api/i/tiny/steer", STEER | {"edits": "clamp 1=inf"}, 422, "finite number"),
        ("/api/i/tiny/steer", STEER | {"edits": ["ablate 1"] * 17}, 422, "limit is 16"),
        ("/api/i/tiny/steer", STEER | {"edits": ""}, 422, "nothing to steer with"),
        ("/api/i/tiny/steer", STEER | {"neurons": "layers.9.mlp_act:1=1"}, 422, "layer"),
        ("/api/i/tiny/steer", STEER | {"neurons": "layers.0.mlp_act:999=1"}, 422, "has 96 units"),
        ("/api/i/tiny/steer", STEER | {"neurons": "1=1"}, 422, "expected SITE:UNIT=VALUE"),
        ("/api/i/tiny/steer", STEER | {"positions": "some"}, 422, "all or generated"),
        ("/api/i/tiny/steer", STEER | {"error_term": "yes"}, 422, "true or false"),
        ("/api/i/tiny/steer", STEER | {"vector_positive": "a"}, 422, "'vector_negative' must be"),
        ("/api/i/tiny/steer", STEER | {"top": 50}, 422, "'top' must be in 1..20"),
        (
            "/api/i/tiny/sweep",
            STEER
            | {
                "feature": 1,
                "op": "ablate",
                "values": "0,1",
                "vocabulary": "a",
                "loss_text": "a b",
            },
            422,
            "op must be",
        ),
        (
            "/api/i/tiny/sweep",
            {
                "prompt": "a",
                "feature": 1,
                "op": "clamp",
                "values": "1 2 3 4 5 6 7 8 9",
                "vocabulary": "a",
                "loss_text": "a b",
            },
            422,
            "limit is 8",
        ),
        (
            "/api/i/tiny/sweep",
            {
                "prompt": "a",
                "feature": 1,
                "op": "clamp",
                "values": "1",
                "vocabulary": "",
                "loss_text": "a b",
            },
            422,
            "'vocabulary' is empty",
        ),
        (
            "/api/i/tiny/sweep",
            {
                "prompt": "a",
                "feature": 99,
                "op": "add",
                "values": "1",
                "vocabulary": "a",
                "loss_text": "a b",
            },
            422,
            "'feature' must be in 0..47",
        ),
        (
            "/api/i/tiny/sweep",
            {
                "prompt": "a",
                "feature": 1,
                "op": "add",
                "values": "x",
                "vocabulary": "a",
                "loss_text": "a b",
            },
            422,
            "numbers like",
        ),
        (
            "/api/i/tiny/inspect",
            {"prompt": "The death", "position": 50},
            422,
            "'position' must be in",
        ),
        ("/api/i/tiny/inspect", {"prompt": "The death", "k": 0}, 422, "'k' must be in 1..20"),
        ("/api/i/tiny/feature/1/activations", {}, 422, "must be a string, got nothing"),
        ("/api/i/tiny/feature/48/activations", {"text": "a"}, 404, "does not exist"),
        ("/api/i/nope/steer", STEER, 404, "no index named"),
    ],
)
def test_bad_model_requests_are_4xx_with_a_message(client, url, body, status, needle) -> None:
    r = client.post(url, json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    assert client.get("/i/tiny").status_code == 200  # and the server keeps serving


def test_malformed_bodies(client) -> None:
    r = client.post("/api/i/tiny/steer", content=b"{not json")
    assert r.status_code == 422 and "must be JSON" in r.json()["error"]
    r = client.post("/api/i/tiny/steer", content=b"[1, 2]")
    assert r.status_code == 422 and "JSON object" in r.json()["error"]
    r = client.post("/api/i/tiny/steer", content=b"x" * 70_000)
    assert r.status_code == 413 and "limit is 65,536" in r.json()["error"]
    assert client.get("/api/i/tiny/steer").status_code == 405


def test_a_bug_is_a_short_500_and_the_server_keeps_serving(client, monkeypatch) -> None:
    from saescope.serve import work

    def broken(*args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(work, "feature_on_text", broken)
    r = client.post("/api/i/tiny/feature/1/activations", json={"text": "The death"})
    assert r.status_code == 500 and "secret" not in r.text and "internal error" in r.text
    assert client.get("/i/tiny/feature/1").status_code == 200


def test_the_queue_is_bounded_and_reports_position(served, model) -> None:
    import asyncio
    import threading

    from saescope.serve.worker import ModelWorker, QueueFull

    worker = ModelWorker(2)
    gate = threading.Event()

    async def scenario() -> None:
        first = asyncio.ensure_future(worker.run(gate.wait, ticket="a"))
        second = asyncio.ensure_future(worker.run(lambda: 2, ticket="b"))
        await asyncio.sleep(0.05)
        assert worker.ahead("a") == 0 and worker.ahead("b") == 1 and worker.pending() == 2
        with pytest.raises(QueueFull, match="the limit is 2"):
            await worker.run(lambda: 3)
        gate.set()
        assert await second == 2 and await first is True
        assert worker.ahead("b") is None and worker.pending() == 0

    asyncio.run(scenario())
    worker.close()


def test_a_full_queue_is_429(served, model) -> None:
    import threading

    from starlette.testclient import TestClient

    from saescope.serve import work
    from saescope.serve.app import create_app

    gate = threading.Event()
    real = work.feature_on_text
    app = create_app([served], model, Limits(queued_jobs=1))
    with TestClient(app) as c:
        work.feature_on_text = lambda *a: (gate.wait(), real(*a))[1]  # type: ignore[assignment]
        try:
            blocked = threading.Thread(
                target=c.post,
                args=("/api/i/tiny/feature/1/activations",),
                kwargs={"json": {"text": "a"}},
            )
            blocked.start()
            while app.state.server.worker.pending() == 0:
                gate.wait(0.01)
            r = c.post("/api/i/tiny/feature/1/activations", json={"text": "a"})
            assert r.status_code == 429 and "queue is full" in r.json()["error"]
            assert c.get("/api/queue?ticket=nope").json() == {"ahead": None, "pending": 1}
        finally:
            gate.set()
            work.feature_on_text = real
            blocked.join()


def test_index_is_opened_read_only(served) -> None:
    import sqlite3

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        served.index.db.execute("DELETE FROM meta")


def test_without_a_model_pages_say_why(served) -> None:
    from starlette.testclient import TestClient

    from saescope.serve.app import create_app

    with TestClient(create_app([served], None)) as c:
        assert c.get("/i/tiny/feature/1").status_code == 200
        assert "not available" in c.get("/i/tiny/steer").text
        r = c.post("/api/i/tiny/steer", json=STEER)
        assert r.status_code == 409 and "without a model" in r.json()["error"]


def test_json_export_round_trips(client, served) -> None:
    data = client.get("/i/tiny/feature/2.json").json()
    assert json.loads(json.dumps(data)) == data and data["index"] == "tiny"
