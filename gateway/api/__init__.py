"""HTTP plumbing shared by every domain's routes: auth, error shapes, size limits."""
