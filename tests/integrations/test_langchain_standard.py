"""LangChain's own standard suites (langchain-tests) run against the adapter: the vector store
suite on an empty store per test, the retriever suite on a store of five documents."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("langchain_tests", reason="needs the dev extra (langchain-tests)")

from langchain_core.documents import Document  # noqa: E402
from langchain_tests.integration_tests import (  # noqa: E402
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from vecstore.integrations.langchain import VecstoreRetriever, VecstoreVectorStore  # noqa: E402


class TestVecstoreVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[VecstoreVectorStore]:
        yield VecstoreVectorStore(self.get_embeddings(), path=tmp_path / "store", table_name="docs")


_STORES: dict[str, VecstoreVectorStore] = {}


class TestVecstoreRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _store(self, tmp_path_factory) -> None:
        if "store" not in _STORES:
            store = VecstoreVectorStore(VectorStoreIntegrationTests.get_embeddings(),
                                        path=tmp_path_factory.mktemp("retriever") / "store")
            store.add_documents([Document(f"document number {i}", metadata={"n": i}) for i in range(5)])
            _STORES["store"] = store

    @property
    def retriever_constructor(self) -> type[VecstoreRetriever]:
        return VecstoreRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"vectorstore": _STORES["store"]}

    @property
    def retriever_query_example(self) -> str:
        return "document number 3"
