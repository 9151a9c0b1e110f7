"""The rollout controller: ticks, leader lease, action executor."""
