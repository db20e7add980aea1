"""Outgoing mail: composing request mails from templates, and the durable outbox that delivers them."""
