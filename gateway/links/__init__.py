"""Signed per-recipient links and the pages behind them."""
