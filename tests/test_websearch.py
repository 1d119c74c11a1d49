"""Web search backends against a local HTTP server that answers each API's documented shapes (and its
error shapes); ddgs, which cannot be pointed at a server, through a patched `DDGS.text`."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from culturemanager.backends.retrieval import web as websearch
from culturemanager.backends.retrieval.web import WebSearchError, make_web_retriever
from culturemanager.config import Culture
from culturemanager.config.search import WebSearchConfig
from culturemanager.records import sha1_text

KEY = "test-key-7f3a9c2e81"
SPAIN = Culture(name="Spanish", language="es", country="es")


# ---------------------------------------------------------------------------------------------- server

@dataclass
class Seen:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: dict | None


class FakeAPI:
    """Answers scripted (status, headers, body) responses in order; the last one repeats forever."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.responses: list[tuple[int, dict[str, str], bytes]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.requests.append(Seen(self.command, url.path, {k: v[0] for k, v in parse_qs(url.query).items()},
                                         {k.lower(): v for k, v in self.headers.items()},
                                         json.loads(raw) if raw else None))
                status, headers, body = api.responses.pop(0) if len(api.responses) > 1 else api.responses[0]
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def script(self, *responses: tuple[int, dict | str | bytes] | tuple[int, dict | str | bytes, dict]) -> None:
        self.responses = []
        for r in responses:
            body = r[1] if isinstance(r[1], bytes) else (r[1] if isinstance(r[1], str) else json.dumps(r[1])).encode()
            self.responses.append((r[0], r[2] if len(r) > 2 else {}, body))


@pytest.fixture(scope="module")
def server():
    server = FakeAPI()
    threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def api(server, monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(websearch, "BACKOFF_S", 0.0)
    server.requests.clear()
    return server


# ---------------------------------------------------------------------------------------------- API shapes

RESULTS = [("https://a.es/toros", "Toros", "La corrida de toros."), ("https://b.es/siesta", "Siesta", "La siesta."),
           ("https://c.es/futbol", "Fútbol", "El fútbol une.")]


def tavily_body(rows):
    return {"query": "q", "answer": None, "images": [], "response_time": 0.5,
            "results": [{"url": u, "title": t, "content": c, "score": 0.9, "raw_content": None} for u, t, c in rows]}


def brave_body(rows):
    if not rows:  # Brave leaves out "web" when nothing was found
        return {"type": "search", "query": {"original": "q"}}
    return {"type": "search", "query": {"original": "q"},
            "web": {"type": "search", "results": [{"title": t, "url": u, "description": c, "language": "es"}
                                                  for u, t, c in rows]}}


def serper_body(rows):
    return {"searchParameters": {"q": "q", "type": "search"},
            "organic": [{"title": t, "link": u, "snippet": c, "position": i + 1} for i, (u, t, c) in enumerate(rows)]}


def searxng_body(rows):
    return {"query": "q", "number_of_results": len(rows), "answers": [], "suggestions": [],
            "results": [{"url": u, "title": t, "content": c, "engine": "bing"} for u, t, c in rows]}


@dataclass
class Spec:
    name: str
    env: str | None
    path: str
    body: object  # rows -> answer
    auth: tuple[str, str] | None  # (header, value) the server must receive


SPECS = {
    "tavily": Spec("tavily", "TAVILY_API_KEY", "/search", tavily_body, ("authorization", f"Bearer {KEY}")),
    "brave": Spec("brave", "BRAVE_API_KEY", "/res/v1/web/search", brave_body, ("x-subscription-token", KEY)),
    "serper": Spec("serper", "SERPER_API_KEY", "/search", serper_body, ("x-api-key", KEY)),
    "searxng": Spec("searxng", None, "/search", searxng_body, None),
}


def request_fields(seen: Seen) -> dict:
    """The parameters of a request, wherever the API puts them (query string or JSON body)."""
    return seen.body if seen.body is not None else seen.params


def make(spec: Spec, api: FakeAPI, monkeypatch, **cfg):
    if spec.env:
        monkeypatch.setenv(spec.env, KEY)
    return make_web_retriever(spec.name, WebSearchConfig(base_url=api.url, **{"max_retries": 2, **cfg}))


@pytest.fixture(params=list(SPECS))
def spec(request) -> Spec:
    return SPECS[request.param]


# ---------------------------------------------------------------------------------------------- HTTP backends

def test_success_parses_documents_and_sends_locale_and_key(spec, api, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    api.script((200, spec.body(RESULTS)))
    r = make(spec, api, monkeypatch)
    docs = r.search("costumbres de España", 5, SPAIN)
    assert [(d.url, d.title, d.text) for d in docs] == RESULTS
    assert [d.score for d in docs] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert docs[0].id == "web:" + sha1_text("https://a.es/toros")[:16]
    assert {d.source for d in docs} == {spec.name}
    assert r.usage["requests"] == 1 and r.usage["results"] == 3 and r.usage["errors"] == r.usage["empty"] == 0

    (seen,) = api.requests
    assert seen.path == spec.path
    if spec.auth:
        assert seen.headers[spec.auth[0]] == spec.auth[1]
    fields = request_fields(seen)
    expected = {"tavily": {"query": "costumbres de España", "max_results": 5, "country": "spain",
                           "search_depth": "basic"},
                "brave": {"q": "costumbres de España", "count": "5", "country": "ES", "search_lang": "es"},
                "serper": {"q": "costumbres de España", "num": 5, "gl": "es", "hl": "es"},
                "searxng": {"q": "costumbres de España", "format": "json", "language": "es-ES", "pageno": "1"},
                }[spec.name]
    assert {k: fields.get(k) for k in expected} == expected
    assert KEY not in caplog.text


def test_k_caps_the_request_and_the_documents(spec, api, monkeypatch):
    api.script((200, spec.body(RESULTS)))
    docs = make(spec, api, monkeypatch, results=5).search("q", 2)
    assert [d.url for d in docs] == ["https://a.es/toros", "https://b.es/siesta"]
    count = {"tavily": "max_results", "brave": "count", "serper": "num"}.get(spec.name)
    if count:
        assert str(request_fields(api.requests[0])[count]) == "2"


def test_unauthorized_is_counted_and_warned_once(spec, api, monkeypatch, caplog):
    api.script((401, {"detail": {"error": "Unauthorized: missing or invalid API key."}}))
    r = make(spec, api, monkeypatch)
    assert r.search("q", 5, SPAIN) == [] and r.search("q", 5, SPAIN) == []
    assert r.usage["errors"] == 2 and r.usage["requests"] == 2 and len(api.requests) == 2  # never retried
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (spec.env or "settings.yml") in warnings[0]
    assert KEY not in caplog.text


def test_rate_limit_honours_retry_after_then_succeeds(spec, api, monkeypatch):
    api.script((429, {"error": "rate limited"}, {"Retry-After": "0"}), (200, spec.body(RESULTS[:1])))
    r = make(spec, api, monkeypatch)
    assert [d.url for d in r.search("q", 5)] == ["https://a.es/toros"]
    assert len(api.requests) == 2 and r.usage["errors"] == 0


def test_rate_limit_forever_gives_up_bounded(spec, api, monkeypatch, caplog):
    api.script((429, {"error": "rate limited"}, {"Retry-After": "0"}))
    r = make(spec, api, monkeypatch, max_retries=2)
    t0 = time.time()
    assert r.search("q", 5) == []
    assert time.time() - t0 < 5
    assert len(api.requests) == 3 and r.usage["errors"] == 1 and r.usage["empty"] == 0
    assert "gave up after 3 attempts" in caplog.text


def test_server_error_is_retried(spec, api, monkeypatch):
    api.script((500, "<html>Internal Server Error</html>"), (503, "busy"), (200, spec.body(RESULTS)))
    r = make(spec, api, monkeypatch)
    assert len(r.search("q", 5)) == 3
    assert len(api.requests) == 3 and r.usage["errors"] == 0


@pytest.mark.parametrize("answer", ["{not json", json.dumps({"unexpected": True}), json.dumps([1, 2])])
def test_malformed_answer_is_counted(spec, api, monkeypatch, answer):
    if spec.name in ("brave", "serper") and answer == json.dumps({"unexpected": True}):
        answer = json.dumps({"web": {"results": "nope"}, "organic": [1]})  # these two allow missing lists
    api.script((200, answer))
    r = make(spec, api, monkeypatch)
    assert r.search("q", 5) == []
    assert r.usage["errors"] == 1 and r.usage["empty"] == 0 and len(api.requests) == 1


def test_zero_results_is_counted_empty(spec, api, monkeypatch):
    api.script((200, spec.body([])))
    r = make(spec, api, monkeypatch)
    assert r.search("q", 5) == []
    assert r.usage["empty"] == 1 and r.usage["errors"] == 0


def test_domains_reach_the_server(spec, api, monkeypatch):
    api.script((200, spec.body(RESULTS)))
    make(spec, api, monkeypatch, include_domains=["elpais.com", "rtve.es"], exclude_domains=["pinterest.com"]
         ).search("siesta", 5)
    fields = request_fields(api.requests[0])
    if spec.name == "tavily":
        assert fields["include_domains"] == ["elpais.com", "rtve.es"]
        assert fields["exclude_domains"] == ["pinterest.com"]
        assert fields["query"] == "siesta"
    else:
        query = fields["q"]
        assert query == "siesta site:elpais.com OR site:rtve.es -site:pinterest.com"


def test_results_are_deduplicated_by_url(spec, api, monkeypatch):
    rows = [RESULTS[0], ("https://A.es/toros/#intro", "Toros again", "dup"), RESULTS[1], RESULTS[1]]
    api.script((200, spec.body(rows)))
    docs = make(spec, api, monkeypatch).search("q", 5)
    assert [d.url for d in docs] == ["https://a.es/toros", "https://b.es/siesta"]
    assert [d.score for d in docs] == [1.0, 0.5]


@dataclass
class FakePage:
    url: str
    final_url: str
    title: str
    text: str
    language: str | None
    status: int = 200


class FakeFetcher:
    """Redirects a.es to www.a.es, fails on b.es, and sends c.es to the same page as a.es."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def fetch_many(self, urls):
        self.asked.append(list(urls))
        pages = {"https://a.es/toros": FakePage(urls[0], "https://www.a.es/toros", "Los toros", "Texto largo.", "es"),
                 "https://b.es/siesta": RuntimeError("connection refused"),
                 "https://c.es/futbol": FakePage(urls[0], "https://www.a.es/toros", "", "Otra vez.", "es")}
        return [pages[u] for u in urls]


def test_fetched_pages_replace_snippets(api, monkeypatch):
    api.script((200, tavily_body([("https://a.es/toros", "", "snippet a"), *RESULTS[1:]])))
    monkeypatch.setenv("TAVILY_API_KEY", KEY)
    fetcher = FakeFetcher()
    r = make_web_retriever("tavily", WebSearchConfig(base_url=api.url), fetcher)
    docs = r.search("q", 5, SPAIN)
    assert fetcher.asked == [[u for u, _, _ in RESULTS]]
    a, b = docs  # c.es landed on the same page as a.es
    assert (a.url, a.title, a.text, a.language) == ("https://www.a.es/toros", "Los toros", "Texto largo.", "es")
    assert a.id == "web:" + sha1_text("https://www.a.es/toros")[:16]
    assert (b.url, b.title, b.text, b.language) == ("https://b.es/siesta", "Siesta", "La siesta.", None)
    assert r.usage["fetched"] == 2 and r.usage["fetch_errors"] == 1 and r.usage["results"] == 2


# ---------------------------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("name,env", [("tavily", "TAVILY_API_KEY"), ("brave", "BRAVE_API_KEY"),
                                      ("serper", "SERPER_API_KEY")])
def test_missing_key_names_the_variable(name, env, monkeypatch):
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(WebSearchError, match=env):
        make_web_retriever(name, WebSearchConfig())
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(WebSearchError, match="MY_KEY"):
        make_web_retriever(name, WebSearchConfig(api_key_env="MY_KEY"))


def test_custom_key_variable_is_used_andredacted(api, monkeypatch):
    from culturemanager.backends.secrets import redact

    monkeypatch.setenv("OTHER_SERPER", "abcdefgh-secret-9")
    api.script((200, serper_body(RESULTS)))
    make_web_retriever("serper", WebSearchConfig(base_url=api.url, api_key_env="OTHER_SERPER")).search("q", 5)
    assert api.requests[0].headers["x-api-key"] == "abcdefgh-secret-9"
    assert "abcdefgh-secret-9" not in redact("boom abcdefgh-secret-9")


def test_searxng_needs_base_url():
    with pytest.raises(WebSearchError, match="base_url"):
        make_web_retriever("searxng", WebSearchConfig())


def test_unknown_backend():
    with pytest.raises(WebSearchError, match="tavily"):
        make_web_retriever("bing", WebSearchConfig())


def test_retry_after_forms():
    assert websearch._retry_after("2", 0) == 2.0
    assert websearch._retry_after("3600", 0) == websearch.MAX_WAIT_S
    assert websearch._retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0) == 0.0  # in the past
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    assert 8 <= websearch._retry_after(future, 0) <= 10
    assert websearch._retry_after("soon", 2) == websearch.BACKOFF_S * 4


# ---------------------------------------------------------------------------------------------- ddgs

@pytest.mark.parametrize("country,language,region", [("es", "es", "es-es"), ("tr", "tr", "tr-tr"),
                                                     ("gb", "en", "uk-en"), ("jp", "ja", "jp-jp"),
                                                     ("eg", "ar", "xa-ar"), ("bd", "bn", "wt-wt"),
                                                     ("ch", None, "ch-de"), (None, "es", "wt-wt")])
def test_ddgs_region(country, language, region):
    assert websearch.ddgs_region(Culture(name="x", country=country, language=language)) == region


def test_ddgs_search_and_errors(monkeypatch, caplog):
    from ddgs.ddgs import DDGS  # the real class (ddgs.DDGS is a lazy-loading proxy)
    from ddgs.exceptions import DDGSException, RatelimitException

    monkeypatch.setattr(websearch, "BACKOFF_S", 0.0)
    calls = []
    answers = [[{"title": t, "href": u, "body": c} for u, t, c in RESULTS] + [{"title": "dup", "href": RESULTS[0][0]}],
               DDGSException("No results found."), RatelimitException("202 Ratelimit"),
               [{"title": "ok", "href": "https://d.es", "body": "d"}]]

    def fake_text(self, query, **kwargs):
        calls.append((query, kwargs))
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(DDGS, "text", fake_text)
    r = make_web_retriever("ddgs", WebSearchConfig(exclude_domains=["pinterest.com"]))
    docs = r.search("siesta", 5, SPAIN)
    assert [(d.url, d.text, d.source) for d in docs] == [(u, c, "ddgs") for u, _, c in RESULTS]
    assert calls[0] == ("siesta -site:pinterest.com", {"region": "es-es", "max_results": 5})
    assert r.search("nada", 5) == [] and r.usage["empty"] == 1 and r.usage["errors"] == 0
    assert [d.url for d in r.search("again", 5)] == ["https://d.es"]  # rate limit retried
    answers[:] = [RatelimitException("202 Ratelimit")]
    assert r.search("limited", 5) == [] and r.usage["errors"] == 1
    assert r.usage["requests"] == 4
