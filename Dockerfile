FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY templates ./templates
RUN pip install . && useradd --system --uid 10001 --home-dir /data --create-home gateway
USER gateway
WORKDIR /data
ENV GATEWAY_DATABASE_URL=sqlite:////data/gateway.sqlite3
# The SQLite database (and nothing else) lives here: give it a volume (docker run -v gateway-data:/data ...).
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
