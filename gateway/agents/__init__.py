"""The outer loop: agents humans write to, notifications, and the agent's messages."""
