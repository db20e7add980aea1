"""Replies by email: the pipeline every inbound mail goes through, and the IMAP poller that feeds it."""
