-- Recorded progress of the given partitions of {topic:String} for consumer group
-- {group_id:String} (partition -1: the horizon up to which final rows were emitted).
SELECT partition, finalized_until, position, effects_until, epoch
FROM aggregate_progress FINAL
WHERE group_id = {group_id:String}
  AND topic = {topic:String}
  AND partition IN {partitions:Array(Int32)}
