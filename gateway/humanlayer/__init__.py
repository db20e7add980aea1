"""HumanLayer's v1 agent API, served by the gateway for HumanLayer's own SDKs (docs/humanlayer.md)."""
