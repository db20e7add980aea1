"""Approvals and questions: creating them, reading them, and turning responses into decisions."""
