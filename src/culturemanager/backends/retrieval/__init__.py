"""Search backends behind one interface (`retriever.Retriever`):

    corpus.py      local files and folders cut into passages        bm25.py      BM25 index over the passages
    dense.py       multilingual embeddings, and hybrid (RRF) fusion  store.py     index folders on disk
    web.py         Tavily, Brave, Serper, SearxNG, DuckDuckGo        fetch.py     SSRF-guarded page fetching
    webresults.py  an API's hits as deduplicated, fetched Documents  urlguard.py  the SSRF guard, URL credentials
    pagetext.py    page bytes to text, title and language            locales.py   a culture's locale per web API
    corpora.py     the benchmark's offline corpora as one passage file
"""
