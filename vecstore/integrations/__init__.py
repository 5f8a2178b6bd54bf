"""Adapters that let RAG frameworks use a vecstore table as their vector store.

- :mod:`vecstore.integrations.langchain`: ``VecstoreVectorStore``, a LangChain
  ``VectorStore``, and ``VecstoreRetriever`` (``pip install 'vecstore[langchain]'``).
- :mod:`vecstore.integrations.llama_index`: ``VecstoreVectorStore``, a LlamaIndex
  ``BasePydanticVectorStore`` (``pip install 'vecstore[llama-index]'``).

Importing this package imports neither framework; importing one of the modules without its
framework raises :class:`~vecstore.MissingDependencyError` naming the extra to install. What the
two share (the table on disk, metadata as typed columns, filters as bound SQL, search modes)
lives in :mod:`vecstore.integrations._common`; docs/integrations.md describes it for users.
"""
