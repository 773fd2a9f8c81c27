# The API server (and the one-shot `hpo db upgrade`). No PyTorch: the GP sampler needs the
# `gp` extra; add it with --build-arg EXTRAS=gp.
FROM python:3.11-slim
ARG EXTRAS=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
RUN pip install ".${EXTRAS:+[$EXTRAS]}"
ENV HPO_HOST=0.0.0.0 HPO_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz').status == 200 else 1)"
CMD ["hpo", "serve"]
