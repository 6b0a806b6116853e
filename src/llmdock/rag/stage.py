"""The ``ground`` stage: answers from a knowledge base, with numbered sources and citations.

A model whose settings name a ``knowledge_base`` gets, on every chat request, the ``rag.top_k`` chunks that
best match the last user turn (``rag.mode``: hybrid by default), with the definitions of any glossary terms
the question uses. They go into the last user turn, before the question, as ``[n] title / headings`` blocks
under ``rag.context_template``: listed before ``guard_in`` in the pipeline, the input guards check them like
any user text, so an injection planted in a document is caught as one typed by the user would be.

The answer carries ``citations: [{source, chunk, score}]`` (numbered as in the context), and the stage's
span records the knowledge base and every hit with its scores. When the sources do not fit the model's
window, the lowest-ranked are dropped until they do.
"""

from __future__ import annotations

from typing import Any

from llmdock.config import Settings
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.env import StageEnv
from llmdock.pipeline.stages import flatten_content
from llmdock.rag import bases
from llmdock.rag.chunking import HEADING_SEPARATOR
from llmdock.rag.glossary import linked
from llmdock.rag.retrieve import Hit, Retriever
from llmdock.rag.route import Rewriter, Router, earlier_turns
from llmdock.rag.window import shrink_to_fit

CITATIONS = "llmdock.ground.citations"  # ctx.attributes: the answer's `citations` field


def source_block(n: int, hit: Hit) -> str:
    where = HEADING_SEPARATOR.join([hit.title or hit.source, *hit.headings[1:]])
    return f"[{n}] {where} ({hit.source})\n{hit.text.strip()}"


class GroundStage:
    name = "ground"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.retriever: Retriever | None = None
        self.router: Router | None = None
        self.rewriter: Rewriter | None = None
        self._glossaries: dict[tuple[str, int], dict[str, str]] = {}

    def bind(self, env: StageEnv) -> None:
        if env.store is not None:
            self.retriever = Retriever(env, env.store)
            self.router = Router(self.retriever, self.settings.rag.route_by)
        if self.settings.rag.rewrite_model:
            self.rewriter = Rewriter(env, self.settings.rag.rewrite_model)

    def knowledge_bases(self, model: str) -> list[str]:
        cfg = self.settings.all_models().get(model)
        return cfg.knowledge_bases() if cfg is not None else []

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        req = ctx.request
        names = self.knowledge_bases(ctx.model)
        if req is None or req.messages is None or ctx.generation is not None or not names:
            return ctx
        turn = next(
            (i for i in range(len(req.messages) - 1, -1, -1) if req.messages[i].get("role") == "user"), None
        )
        if turn is None or self.retriever is None or self.router is None:
            return ctx
        question = flatten_content(req.messages[turn].get("content"))
        query = question
        if self.rewriter is not None:
            rewritten = await self.rewriter.rewrite(earlier_turns(req.messages, turn), question)
            if rewritten:
                query = rewritten
                ctx.annotate(**{"llmdock.ground.rewritten": rewritten})
        routed = await self.router.route(names, query)
        kb = routed.kb
        if routed.scores:
            ctx.annotate(**{"llmdock.ground.routes": {k: round(v, 6) for k, v in routed.scores.items()}})
        rag = self.settings.rag
        hits = await self.retriever.search(
            kb,
            query,
            k=rag.top_k,
            mode=rag.mode,
            mmr=rag.mmr_lambda if rag.mmr else None,
            min_score=rag.min_score,
        )
        terms = linked(self._glossary(kb), question)
        messages = req.messages
        original = messages[turn]

        def write(sources: list[Hit]) -> None:
            messages[turn] = {
                **original,
                "content": self._context(sources, terms) + "\n\nQuestion: " + question,
            }

        hits = shrink_to_fit(ctx.backend, req, hits, write, lambda h: h[:-1])  # the lowest-ranked goes
        ctx.attributes[CITATIONS] = [h.cite() for h in hits]
        ctx.annotate(**{"llmdock.ground.kb": kb, "llmdock.ground.hits": [_traced(h) for h in hits]})
        if terms:
            ctx.annotate(**{"llmdock.ground.glossary": list(terms)})
        return ctx

    def _context(self, hits: list[Hit], terms: dict[str, str]) -> str:
        sources = "\n\n".join(source_block(n, h) for n, h in enumerate(hits, 1))
        glossary = "".join(f"\n\n{t}: {d}" for t, d in terms.items())
        if glossary:
            glossary = "\n\nGlossary:" + glossary
        return self.settings.rag.context_template.format(
            sources=sources or "(no sources found)", glossary=glossary
        )

    def _glossary(self, name: str) -> dict[str, str]:
        assert self.retriever is not None
        index = self.retriever.index(name)  # its version says whether the glossary changed too
        key = (name, index.kb.version)
        if key not in self._glossaries:
            self._glossaries = {key: bases.glossary(self.retriever.store, index.kb.id)}
        return self._glossaries[key]


def _traced(hit: Hit) -> dict[str, Any]:
    return {**hit.cite(), "scores": {k: round(v, 6) for k, v in hit.scores.items()}, "headings": hit.headings}
