"""Webhooks: every final outcome (and, opt-in, every response) POSTed to the request's callback_url and the
globally configured endpoints, signed the Standard Webhooks way, delivered from the durable outbox."""
