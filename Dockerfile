# synthgen service image: the API (`synthgen serve`), GPU workers (`synthgen worker`) and beat
# run from this one image with different commands (see docker-compose.yml).
#
# GPU nodes: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 (or the
# CUDA build that matches the node) so the same torch release is installed with CUDA.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SYNTHGEN_DATA_DIR=/var/lib/synthgen \
    SYNTHGEN_HOST=0.0.0.0 \
    SYNTHGEN_PORT=8000

WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY synthgen ./synthgen
COPY api ./api
COPY workers ./workers
RUN pip install ".[evaluate,s3]" "psycopg[binary]>=3.1" "pymysql>=1.1" \
    && useradd --system --uid 10001 --home /var/lib/synthgen synthgen \
    && mkdir -p /var/lib/synthgen && chown synthgen /var/lib/synthgen

USER synthgen
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request, os; \
urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"SYNTHGEN_PORT\"]}/healthz', timeout=4)"
CMD ["synthgen", "serve"]
