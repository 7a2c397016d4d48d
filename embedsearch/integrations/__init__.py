"""Adapters for LLM frameworks, over a collection in this process or in an embedsearch service:

* :mod:`embedsearch.integrations.langchain`: a LangChain ``VectorStore`` and ``Embeddings``
  (``pip install -e '.[langchain]'``);
* :mod:`embedsearch.integrations.llamaindex`: a LlamaIndex vector store and embedding model
  (``pip install -e '.[llamaindex]'``).

Both sit on :mod:`embedsearch.integrations.backends` (local or HTTP) and
:mod:`embedsearch.integrations.filters` (the frameworks' filters as ours). Nothing else in
embedsearch imports this package, and the frameworks are imported only by their own adapter.
"""
