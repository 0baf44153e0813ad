# agent-router: slim image, non-root, health-checked.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY router ./router
COPY providers ./providers
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENT_ROUTER_HOST=0.0.0.0 \
    AGENT_ROUTER_PORT=8080 \
    AGENT_ROUTER_DATABASE_URL=sqlite:////data/agent-router.db
COPY --from=build /install /usr/local
COPY routing_rules /app/routing_rules
RUN useradd --system --uid 10001 --home-dir /app router \
    && mkdir -p /data && chown router /data
USER router
WORKDIR /app
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["agent-router"]
CMD ["serve"]
