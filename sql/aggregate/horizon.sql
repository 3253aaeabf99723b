-- The topic-wide finalization horizon: how many of the topic's partitions
-- 0..{partitions:Int32}-1 have recorded progress, and the lowest finalized_until
-- among them. Windows ending at or before it are final for every partition.
SELECT count() AS partitions, min(finalized_until) AS horizon
FROM aggregate_progress FINAL
WHERE group_id = {group_id:String}
  AND topic = {topic:String}
  AND partition >= 0
  AND partition < {partitions:Int32}
