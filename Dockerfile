# The one image every Lakou service runs from (`lakou serve <service>`); see compose.yaml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY beckn ./beckn
COPY registry ./registry
COPY gateway ./gateway
COPY bpp ./bpp
COPY bap ./bap
COPY did ./did
RUN pip install . && useradd --system --home /var/lib/lakou --create-home lakou
USER lakou
WORKDIR /var/lib/lakou
