"""What the stages run on, each behind a small interface and picked by an explicit dict lookup:

    llm.py        the generator: local (transformers / llama.cpp), any OpenAI-compatible endpoint, or a fake
    target.py     the target model: loading, the one prompt-encoding rule, option scoring, generation
    models.py     model names (packaged short names, GGUF files, folders, hub ids) to loadable files, offline
    secrets.py    API keys from the environment, redacted from everything logged
    retrieval/    search backends: the local corpus (BM25, dense, hybrid) and web search APIs with safe fetching
"""
