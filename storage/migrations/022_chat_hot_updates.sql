-- Every message (in or out) moves its chat's last_message_at, and an update
-- can be HOT (a new row version on the same page, no new index entries) only
-- when it changes no indexed column. With last_message_at in the assignee
-- indexes (migration 020), each message's chat update added an entry to each
-- of the chat's seven indexes: 35 us a chat update against 16 us as a HOT
-- one (bench/overheads.py: 50 chats an UPDATE, one backend), and indexes
-- that grew with every message until vacuumed.
--
-- The assignee lists now find their chats through (org, assignee) and sort
-- them, as the unfiltered list (which counts them all anyway) always has:
-- a page of one member's 5,000 chats (of 20,000) 1.15 -> 5.74 ms
-- (bench/overheads.py). A message is written far more often than a list is
-- read.
-- The updates of every message leave every index as it is
-- (tests/storage/test_chat_updates.py). A fill factor leaves room on each
-- page for the versions the updates make.
DROP INDEX idx_chats_assigned_user;
DROP INDEX idx_chats_assigned_agent;
CREATE INDEX idx_chats_assigned_user ON chats (organization_id, assigned_user_id);
CREATE INDEX idx_chats_assigned_agent ON chats (organization_id, assigned_agent_id);
ALTER TABLE chats SET (fillfactor = 70);
