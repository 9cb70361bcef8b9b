-- Long-term memory search: HNSW (cosine) replaces the spec's IVFFlat index.
--
-- Measured by bench/memory.py on this machine (2 cores): 100,000 memories of
-- one org (generated CRM notes, offline embeddings), 200 paraphrased queries,
-- recall@10 against the exact ranking, p95 through tenant_tx as bidi_app:
--   HNSW m=16 ef_construction=64:  build 61 s; ef_search 40: 4.2 ms, 0.948;
--                                  ef_search 100: 7.5 ms, 0.974 (what
--                                  storage.memories sets); 200: 12.5 ms, 0.986
--   HNSW m=32 ef_construction=128: build 127 s (twice m=16's) on a harder
--                                  one-sentence set; ef_search 100 already
--                                  meets the goal with m=16
--   IVFFlat lists=100:             build 4.5 s; probes 1: 7.9 ms, 0.35;
--                                  probes 10: 21.6 ms, 0.71; 20: 42 ms, 0.81
--   exact scan:                    ~700-1600 ms
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
