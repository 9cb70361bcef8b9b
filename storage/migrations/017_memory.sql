-- Long-term memory search: HNSW (cosine) replaces the spec's IVFFlat index.
--
-- Measured by bench/memory.py on this machine (2 shared cores): 100,000
-- memories of one org (generated multi-sentence CRM notes, offline
-- embeddings), 200 paraphrased queries, recall@10 against the exact ranking,
-- p95 through tenant_tx as bidi_app (two runs, `--compare` in one):
--   HNSW m=16 ef_construction=64:  build 59-61 s; ef_search 40: 4.2 ms, 0.948;
--                                  ef_search 100 (what storage.memories sets):
--                                  7.1-7.4 ms, 0.972; ef_search 200: 12.5 ms, 0.986
--   HNSW m=32 ef_construction=128: build 127 s (twice m=16's); measured only on
--                                  a harder one-sentence set, where it gained
--                                  about 10 points of recall at equal ef_search
--   IVFFlat lists=100:             build 4.5-8 s; probes 1: 9.4 ms, 0.33;
--                                  probes 10: 21 ms, 0.73; probes 20: 40 ms, 0.83
--   exact scan:                    p95 460-620 ms (65-84x the HNSW search)
-- IVFFlat is kept nowhere: it needs probes that cost more than HNSW for far
-- less recall, its centroids are fixed when it is built (001 built it on an
-- empty table, where they mean nothing), and a second vector index would only
-- slow every insert. One contact's memories are ranked exactly by the btree
-- on contact_id (idx_agent_memories_contact_id), never through this index.
--
-- maintenance_work_mem: the build is many times slower when the graph does
-- not fit (this transaction only).
DROP INDEX IF EXISTS idx_agent_memories_embedding;
SET LOCAL maintenance_work_mem = '1GB';
CREATE INDEX idx_agent_memories_embedding ON agent_memories
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

-- The exact ranking of an org's (or one agent's) memories when the HNSW
-- candidates run out under the org's policy: a small org in a large table
-- reads its own rows, not the whole table.
CREATE INDEX idx_agent_memories_org_agent ON agent_memories (organization_id, agent_id);
